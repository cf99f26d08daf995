"""BasicSR-format YAML options parsed into typed, validated dataclasses.

Every key is checked: an unknown key, a wrong type or a missing required setting is an OptionsError whose
one-line message names the file, the key path and what was expected. Test and training schemas both live
here; `--force-yml key:sub=value` overrides are applied to the raw mapping before checking, as in BasicSR.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class OptionsError(ValueError):
    """Invalid options; the message is one line: '<file>: <key path>: <problem>'."""


@dataclass
class NetworkOptions:
    """`network_g`: the family name in `type`, everything else passed to its constructor."""

    type: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetOptions:
    """A dataset entry: BasicSR's keys for test, validation and training sets.

    `PairedImageDataset` reads HR/LR folders; `BicubicHRDataset` (ours) reads HR folders only (one or a list)
    and makes LR patches on the fly with MATLAB-exact bicubic; `ImageNetPairedDataset` is HAT's HR-only
    variant. `prefetch_mode` is accepted and has no effect: DataLoader workers with `prefetch_factor`
    batches each do the prefetching. Values of `io_backend`, `color`, `mean` and `std` other than the
    defaults are refused.
    """

    name: str
    type: str = "PairedImageDataset"
    dataroot_gt: str | list[str] | None = None
    dataroot_lq: str | None = None
    filename_tmpl: str = "{}"
    io_backend: dict[str, Any] = field(default_factory=lambda: {"type": "disk"})
    meta_info_file: str | None = None
    phase: str | None = None
    task: str | None = None
    scale: int | None = None
    color: str | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    gt_size: int | None = None
    use_hflip: bool = False
    use_flip: bool | None = None
    use_rot: bool = False
    use_shuffle: bool = True
    num_worker_per_gpu: int = 2
    batch_size_per_gpu: int = 16
    dataset_enlarge_ratio: int = 1
    prefetch_mode: str | None = None
    prefetch_factor: int = 4
    pin_memory: bool = False
    num_prefetch_queue: int | None = None
    # DegradedHRDataset (restoration): noise level(s) on the 0..255 scale and JPEG quality(ies), each a
    # number or a [low, high] range drawn per patch; the chance that noisy patches are clipped to 8 bits.
    noise_sigma: float | list[float] | None = None
    noise_clip_prob: float = 0.0
    jpeg_quality: int | list[int] | None = None
    gray_prob: float = 0.0  # share of a colour model's patches that are gray photos (degraded as gray)
    # RealESRGANDataset (Real-ESRGAN's keys): the blur kernels of the two degradation stages and the final
    # sinc filter; `meta_info` is Real-ESRGAN's name for meta_info_file; `crop_pad_size` is the size every
    # HR image is cropped or padded to before degradation (400, fixed in Real-ESRGAN's code).
    meta_info: str | None = None
    crop_pad_size: int = 400
    bicubic_prob: float = 0.0  # ours: the share of patches made by plain MATLAB bicubic instead
    blur_kernel_size: int = 21
    kernel_list: list[str] | None = None
    kernel_prob: list[float] | None = None
    blur_sigma: list[float] | None = None
    betag_range: list[float] | None = None
    betap_range: list[float] | None = None
    sinc_prob: float | None = None
    blur_kernel_size2: int = 21
    kernel_list2: list[str] | None = None
    kernel_prob2: list[float] | None = None
    blur_sigma2: list[float] | None = None
    betag_range2: list[float] | None = None
    betap_range2: list[float] | None = None
    sinc_prob2: float | None = None
    final_sinc_prob: float | None = None


@dataclass
class PathOptions:
    pretrain_network_g: str | None = None
    strict_load_g: bool = True
    param_key_g: str | None = None
    pretrain_network_d: str | None = None
    strict_load_d: bool = True
    param_key_d: str | None = None
    results_root: str | None = None
    resume_state: str | None = None
    experiments_root: str | None = None


@dataclass
class MetricOptions:
    type: str
    crop_border: int | None = None
    test_y_channel: bool = False
    better: str | None = None


@dataclass
class ValOptions:
    save_img: bool = False
    suffix: str | None = None
    metrics: dict[str, MetricOptions] = field(default_factory=dict)
    pbar: bool | None = None
    val_freq: int | None = None


@dataclass
class TileOptions:
    tile_size: int
    tile_pad: int = 32


@dataclass
class TestOptions:
    name: str
    scale: int
    network_g: NetworkOptions
    datasets: dict[str, DatasetOptions]
    model_type: str = "SRModel"
    num_gpu: int | str = 1
    manual_seed: int | None = None
    suffix: str | None = None
    crop_border: int | None = None
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions = field(default_factory=ValOptions)
    tile: TileOptions | None = None


@dataclass
class OptimizerOptions:
    type: str
    lr: float
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False


@dataclass
class SchedulerOptions:
    """MultiStepLR / MultiStepRestartLR (milestones, gamma) or CosineAnnealingRestartLR (periods)."""

    type: str
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    restarts: list[int] = field(default_factory=lambda: [0])
    restart_weights: list[float] = field(default_factory=lambda: [1.0])
    periods: list[int] = field(default_factory=list)
    eta_min: float = 0.0


@dataclass
class LossOptions:
    type: str
    loss_weight: float = 1.0
    reduction: str = "mean"
    eps: float = 1e-12


@dataclass
class GANLossOptions:
    """BasicSR's `gan_opt`: vanilla (BCE on logits), lsgan, wgan, wgan_softplus or hinge; loss_weight
    scales the generator's term only."""

    type: str = "GANLoss"
    gan_type: str = "vanilla"
    real_label_val: float = 1.0
    fake_label_val: float = 0.0
    loss_weight: float = 1.0


@dataclass
class PerceptualLossOptions:
    """BasicSR's `perceptual_opt` (VGG feature distances and Gram-matrix style distances); `vgg_weights`
    (ours) names the torchvision-format VGG file, otherwise BasicSR's place for it or the download cache."""

    layer_weights: dict[str, float]
    type: str = "PerceptualLoss"
    vgg_type: str = "vgg19"
    use_input_norm: bool = True
    range_norm: bool = False
    perceptual_weight: float = 1.0
    style_weight: float = 0.0
    criterion: str = "l1"
    vgg_weights: str | None = None


@dataclass
class SecondOrderOptions:
    """The top-level keys of Real-ESRGAN's option files that configure its second-order degradation
    (RealESRGANModel / RealESRNetModel, and HAT's RealHAT models): resize (up, down, keep) probabilities and
    scale ranges, Gaussian (σ on the 0..255 scale) or Poisson noise, gray-noise chance and JPEG quality
    ranges for each stage, the second stage's blur chance, which targets are unsharp-masked, the patch
    size and the training-pair pool. Defaults are those of `train_realesrgan_x4plus.yml`."""

    gt_size: int = 256
    queue_size: int = 180
    gt_usm: bool = True
    l1_gt_usm: bool = True
    percep_gt_usm: bool = True
    gan_gt_usm: bool = False
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    gaussian_noise_prob: float = 0.5
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    gray_noise_prob: float = 0.4
    jpeg_range: list[float] = field(default_factory=lambda: [30.0, 95.0])
    second_blur_prob: float = 0.8
    resize_prob2: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range2: list[float] = field(default_factory=lambda: [0.3, 1.2])
    gaussian_noise_prob2: float = 0.5
    noise_range2: list[float] = field(default_factory=lambda: [1.0, 25.0])
    poisson_scale_range2: list[float] = field(default_factory=lambda: [0.05, 2.5])
    gray_noise_prob2: float = 0.4
    jpeg_range2: list[float] = field(default_factory=lambda: [30.0, 95.0])


@dataclass
class TrainSettings:
    optim_g: OptimizerOptions
    total_iter: int
    scheduler: SchedulerOptions | None = None
    pixel_opt: LossOptions | None = None
    ema_decay: float = 0.0
    warmup_iter: int = -1
    grad_clip: float | None = None
    amp: str | None = None
    channels_last: bool = False
    # GAN model types (SRGANModel, RealESRGANModel, RealHATGANModel): the discriminator's optimiser, the
    # adversarial and perceptual losses, and how often the generator steps (BasicSR's keys).
    optim_d: OptimizerOptions | None = None
    perceptual_opt: PerceptualLossOptions | None = None
    gan_opt: GANLossOptions | None = None
    net_d_iters: int = 1
    net_d_init_iters: int = 0


@dataclass
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: int = 5000
    use_tb_logger: bool = True
    wandb: dict[str, Any] | None = None


@dataclass
class TrainOptions:
    name: str
    scale: int
    network_g: NetworkOptions
    datasets: dict[str, DatasetOptions]
    train: TrainSettings
    network_d: NetworkOptions | None = None
    model_type: str = "SRModel"
    num_gpu: int | str = "auto"
    manual_seed: int | None = None
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions | None = None
    logger: LoggerOptions = field(default_factory=LoggerOptions)
    dist_params: dict[str, Any] | None = None
    print_network: bool = False
    find_unused_parameters: bool = False
    # Real-ESRGAN's degradation keys, written at the top level of its files (gathered here when present).
    degradation: SecondOrderOptions | None = None


SECOND_ORDER_KEYS = tuple(f.name for f in dataclasses.fields(SecondOrderOptions))


def read_yaml(path: str | Path) -> dict:
    """The mapping at the top of a YAML file, or an OptionsError naming the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise OptionsError(f"{path}: cannot read ({error.strerror or error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise OptionsError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a mapping of options at the top level")
    return data


def load_test_options(path: str | Path) -> TestOptions:
    return parse(TestOptions, read_yaml(path), Path(path))


def load_train_options(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainOptions:
    """Training options from a YAML file, with BasicSR-style `key:sub=value` overrides applied first."""
    data = read_yaml(path)
    for override in overrides:
        apply_override(data, override, Path(path))
    if "degradation" in data:
        raise OptionsError(f"{path}: degradation: unknown option (its keys go at the top level)")
    degradation = {key: data.pop(key) for key in SECOND_ORDER_KEYS if key in data}
    opt = parse(TrainOptions, data, Path(path))
    if degradation:
        opt.degradation = parse(SecondOrderOptions, degradation, Path(path))
        _check_second_order(opt.degradation, Path(path))
    return opt


def apply_override(data: dict, override: str, source: Path) -> None:
    """Set `a:b:c=value` (or `a.b.c=value`) in a raw options mapping; the value is read as YAML."""
    key, sep, text = override.partition("=")
    path = [part for part in key.replace(".", ":").split(":") if part]
    if not sep or not path:
        raise OptionsError(f"{source}: --force-yml {override!r}: expected key:sub=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise OptionsError(f"{source}: --force-yml {override!r}: value is not valid YAML") from None
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise OptionsError(f"{source}: --force-yml {':'.join(path[: i + 1])} is not a mapping")
        node = child
    node[path[-1]] = value


def parse(cls: type, data: Any, source: Path, where: str = "") -> Any:
    """Build dataclass `cls` from `data`, checking every key and type against its annotations."""
    if not isinstance(data, dict):
        raise OptionsError(f"{source}: {where or 'options'}: expected a mapping, got {_describe(data)}")
    if cls is NetworkOptions:
        data = {"type": data.get("type"), "args": {k: v for k, v in data.items() if k != "type"}}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(fields)
            raise OptionsError(f"{source}: {_join(where, key)}: unknown option (known here: {known})")
    values = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise OptionsError(f"{source}: {_join(where, name)}: required option missing")
            continue
        values[name] = _convert(hints[name], data[name], source, _join(where, name))
    parsed = cls(**values)
    if cls is DatasetOptions:
        _check_dataset(parsed, source, where)
    return parsed


def _check_dataset(opt: DatasetOptions, source: Path, where: str) -> None:
    """BasicSR keys whose other values this toolkit does not implement are refused, not silently ignored."""
    backend = opt.io_backend.get("type", "disk")
    if backend != "disk":
        raise OptionsError(
            f"{source}: {_join(where, 'io_backend.type')}: {backend!r} is not supported (images are read "
            "from folders on disk: type: disk)"
        )
    degraded = opt.type == "DegradedHRDataset"
    if opt.color not in (None, "rgb") and not (degraded and opt.color in ("gray", "y")):
        allowed = "rgb, gray or y" if degraded else "RGB only"
        raise OptionsError(f"{source}: {_join(where, 'color')}: {opt.color!r} is not supported ({allowed})")
    _check_degradations(opt, source, where, degraded)
    _check_blur_kernels(opt, source, where)
    for key in ("mean", "std"):
        if getattr(opt, key) is not None:
            raise OptionsError(
                f"{source}: {_join(where, key)}: input normalisation is not supported (networks here take "
                "[0, 1] RGB)"
            )


def _check_degradations(opt: DatasetOptions, source: Path, where: str, degraded: bool) -> None:
    """Noise and JPEG settings in range (a value or an ordered [low, high]), for DegradedHRDataset only."""
    from sr.data.degradations import check_quality, check_sigma

    given = [k for k in ("noise_sigma", "jpeg_quality") if getattr(opt, k) is not None]
    if given and not degraded:
        raise OptionsError(f"{source}: {_join(where, given[0])}: only DegradedHRDataset degrades images")
    if degraded and not given:
        raise OptionsError(f"{source}: {where}: DegradedHRDataset needs noise_sigma and/or jpeg_quality")
    for key, check, lowest in (("noise_sigma", check_sigma, 0.0), ("jpeg_quality", check_quality, None)):
        value = getattr(opt, key)
        values = value if isinstance(value, list) else [] if value is None else [value]
        try:
            if isinstance(value, list) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"a range is [low, high], got {value}")
            for i, v in enumerate(values):
                if not (i == 0 and len(values) == 2 and v == lowest):  # a noise range may start at 0
                    check(v)
        except ValueError as problem:
            raise OptionsError(f"{source}: {_join(where, key)}: {problem}") from None
    for key in ("noise_clip_prob", "gray_prob"):
        if not 0 <= getattr(opt, key) <= 1:
            raise OptionsError(f"{source}: {_join(where, key)}: a probability is between 0 and 1")


REAL_KERNEL_KEYS = tuple(
    f"{key}{stage}"
    for stage in ("", "2")
    for key in ("kernel_list", "kernel_prob", "blur_sigma", "betag_range", "betap_range", "sinc_prob")
) + ("final_sinc_prob",)


def _probability(value: float, source: Path, where: str) -> None:
    if not 0 <= value <= 1:
        raise OptionsError(f"{source}: {where}: a probability is between 0 and 1, got {value:g}")


def _range(value: list[float], source: Path, where: str, low: float = 0.0, high: float = float("inf")):
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise OptionsError(f"{source}: {where}: expected [low, high] within [{low:g}, {high:g}], got {value}")


def _check_blur_kernels(opt: DatasetOptions, source: Path, where: str) -> None:
    """Real-ESRGAN's kernel keys: only for RealESRGANDataset, known kernel types, one probability each."""
    from sr.data.blur_kernels import KERNEL_TYPES, PADDED_SIZE

    real = opt.type == "RealESRGANDataset"
    for key in REAL_KERNEL_KEYS:
        value = getattr(opt, key)
        if value is None:
            continue
        if not real:
            raise OptionsError(f"{source}: {_join(where, key)}: only RealESRGANDataset uses blur kernels")
        if key.startswith(("sinc_prob", "final_sinc_prob")):
            _probability(value, source, _join(where, key))
        elif key.startswith("kernel_list"):
            unknown = [k for k in value if k not in KERNEL_TYPES]
            if unknown:
                raise OptionsError(
                    f"{source}: {_join(where, key)}: unknown kernel type {unknown[0]!r} "
                    f"(known: {', '.join(KERNEL_TYPES)})"
                )
        elif key.startswith("kernel_prob"):
            listed = getattr(opt, key.replace("prob", "list"))
            if listed and len(listed) != len(value) or min(value) < 0 or sum(value) <= 0:
                raise OptionsError(
                    f"{source}: {_join(where, key)}: one non-negative probability per kernel_list entry"
                )
        else:
            _range(value, source, _join(where, key), low=1e-6)
    for key in ("blur_kernel_size", "blur_kernel_size2"):
        if real and getattr(opt, key) != PADDED_SIZE:
            raise OptionsError(
                f"{source}: {_join(where, key)}: only {PADDED_SIZE} is supported (Real-ESRGAN draws sizes "
                f"7..21 and pads them to 21)"
            )
    if opt.bicubic_prob and not real:
        raise OptionsError(f"{source}: {_join(where, 'bicubic_prob')}: only RealESRGANDataset uses it")
    _probability(opt.bicubic_prob, source, _join(where, "bicubic_prob"))
    if real and opt.meta_info and opt.meta_info_file:
        raise OptionsError(f"{source}: {_join(where, 'meta_info')}: give it or meta_info_file, not both")


def _check_second_order(opt: SecondOrderOptions, source: Path) -> None:
    """Probabilities in [0, 1], ordered ranges, three resize probabilities, JPEG qualities in 1..100."""
    for key in ("gaussian_noise_prob", "gray_noise_prob", "second_blur_prob"):
        for name in (key, f"{key}2") if key != "second_blur_prob" else (key,):
            _probability(getattr(opt, name), source, name)
    for name in ("resize_prob", "resize_prob2"):
        value = getattr(opt, name)
        if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
            raise OptionsError(f"{source}: {name}: expected three [up, down, keep] probabilities (not all 0)")
    for name in ("resize_range", "resize_range2"):
        _range(getattr(opt, name), source, name, low=1e-3)
        if not getattr(opt, name)[0] <= 1 <= getattr(opt, name)[1]:
            raise OptionsError(f"{source}: {name}: the range must contain 1 (down below it, up above it)")
    for name in ("noise_range", "noise_range2", "poisson_scale_range", "poisson_scale_range2"):
        _range(getattr(opt, name), source, name)
    for name in ("jpeg_range", "jpeg_range2"):
        _range(getattr(opt, name), source, name, low=1, high=100)
    if opt.gt_size < 4 or opt.queue_size < 0:
        raise OptionsError(f"{source}: gt_size must be at least 4 and queue_size not negative")


def _convert(hint: Any, value: Any, source: Path, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, where)
            except OptionsError as error:
                problems.append(error)
        raise problems[0]
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, source, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise OptionsError(f"{source}: {where}: expected a mapping, got {_describe(value)}")
        item = args[1] if args else Any
        return {str(k): _convert(item, v, source, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise OptionsError(f"{source}: {where}: expected a list, got {_describe(value)}")
        return [_convert(args[0], v, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # PyYAML reads `2e-4` (no dot) as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # BasicSR files write counts as `!!float 5e3`
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise OptionsError(f"{source}: {where}: expected {hint.__name__}, got {_describe(value)}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"
