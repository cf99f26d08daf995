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


@dataclass
class PathOptions:
    pretrain_network_g: str | None = None
    strict_load_g: bool = True
    param_key_g: str | None = None
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
    model_type: str = "SRModel"
    num_gpu: int | str = "auto"
    manual_seed: int | None = None
    path: PathOptions = field(default_factory=PathOptions)
    val: ValOptions | None = None
    logger: LoggerOptions = field(default_factory=LoggerOptions)
    dist_params: dict[str, Any] | None = None
    print_network: bool = False
    find_unused_parameters: bool = False


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
    return parse(TrainOptions, data, Path(path))


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
