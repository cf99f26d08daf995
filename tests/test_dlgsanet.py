"""DLGSANet: the plain-PyTorch dynamic convolution against the CUDA kernel's definition, the TLC crop layout
against the official loop, the network against a float64 transcription of the official forward (eval with
TLC crops, and training), detection and settings, option files, a few training iterations and ONNX export.

Parity with the real official module (NeonLeexiang/DLGSANet @0974b9a `basicsr/archs/dlgsanet_arch.py`, run
out of the repository with its CuPy op replaced by `reference.idynamic`: /tmp/dlgsanet_official/compare.py,
torch 2.13 CPU, 1 thread, fp32, batch 1, eval and train modes) on 4 configurations (x3 direct 19x23 with
8-pixel TLC crops; x4 'pixelshuffle' 53x50, window 5, TLC 48, FFN 2.66/1.5; x2 'pixelshuffle' 25x17, window 3,
GELU, TLC 10; x2 direct 100x31, 2 groups of 2 blocks, TLC 96): max |ours - official| 1.0e-6, the size of
|official - float64 transcription| (7.6e-7); outputs up to 1.9 in magnitude; the crops change the official
output by 3.4e-4 to 5.5e-2 (eval vs train), so the layout is exercised.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch

import archs
import sr
from archs import MissingHyperParameter, dlgsanet
from archs.dlgsanet import DLGSANet, tlc_windows
from kernels.dynamic_conv import dynamic_depthwise_conv
from sr.loading import network_params
from sr.options import load_test_options, load_train_options
from tests.helpers.detect import load
from tests.oracles import dlgsanet_reference as reference

ROOT = Path(__file__).resolve().parents[1]
# Small widths and depths of the released structure, every upsampler and scale, sizes off every crop grid.
CASES = [
    (
        {
            "dim": 12,
            "groups": 2,
            "blocks": 1,
            "idynamic_num_heads": 3,
            "restormer_num_heads": 2,
            "scale": 3,
            "tlc_kernel": 8,
        },
        (19, 23),
    ),
    (
        {
            "dim": 16,
            "groups": 1,
            "blocks": 2,
            "idynamic_num_heads": 4,
            "restormer_num_heads": 4,
            "window_size": 5,
            "scale": 4,
            "upsampler": "pixelshuffle",
            "idynamic_ffn_expansion_factor": 2.66,
            "restormer_ffn_expansion_factor": 1.5,
            "tlc_kernel": 48,  # the x4 default: this map is one crop (the whole-map shortcut)
        },
        (20, 17),
    ),
    (
        {
            "dim": 8,
            "groups": 1,
            "blocks": 1,
            "idynamic_num_heads": 2,
            "restormer_num_heads": 2,
            "window_size": 3,
            "scale": 2,
            "upsampler": "pixelshuffle",
            "activation": "gelu",
            "tlc_kernel": 10,
        },
        (25, 11),
    ),
]
# Parameter counts of the official module (x2, x3, x4) for the three released sizes, /tmp/dlgsanet_official
# (`DLGSANet(dim, groups, blocks, upscale, upsampler='pixelshuffledirect', buildblock_type='sparseedge')`).
PARAMS = {
    "DLGSANet": (4_733_724, 4_745_889, 4_762_920),
    "DLGSANet-light": (745_188, 751_683, 760_776),
    "DLGSANet-tiny": (565_710, 572_205, 581_298),
}


def random_weights(seed: int, **config) -> dict[str, torch.Tensor]:
    """A seeded model's weights: convolutions at their init, norms, biases and temperatures perturbed."""
    torch.manual_seed(seed)
    model = DLGSANet(**config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() <= 3:
                p.add_(0.1 * torch.randn_like(p))
    return model.state_dict()


def image(seed: int, h: int, w: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("k", "groups"), [(7, 3), (5, 1), (3, 4)])
def test_dynamic_convolution_is_the_cuda_kernel(k, groups):
    """`dynamic_depthwise_conv` (its tensor ops: float64) equals the transcription of the official
    `idynamic_forward_kernel` (odd sizes), and so do its gradients (the official backward kernels compute the
    gradients of that sum)."""
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 12, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, groups, k, k, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 12, 9, 11, generator=g, dtype=torch.float64)
    expected = reference.idynamic(x, weight, (k - 1) // 2)
    got = dynamic_depthwise_conv(x, weight)
    assert (got - expected).abs().max().item() < 1e-12
    want_grads = torch.autograd.grad(expected, (x, weight), upstream)
    for a, b in zip(torch.autograd.grad(got, (x, weight), upstream), want_grads, strict=True):
        assert (a - b).abs().max().item() < 1e-12


def test_tlc_layout_is_the_official_loop():
    """The tensor-computed crops are the official `grids` loop's, for every size up to 600 and each kernel."""
    for kernel in (8, 48, 72, 96):
        for size in range(1, 601):
            want = sorted({i for i, _, _, _ in reference.grids(size, 1, kernel)})
            rows = tlc_windows(size, kernel)
            assert rows[:, 0].tolist() == want and rows.shape[1] == min(size, kernel), (kernel, size)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize(("config", "size"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_forward_matches_the_official_transcription(config, size, mode):
    """Eval mode attends within TLC crops (sizes here off the crop grid), train mode over the whole map; a
    batch of 2 against the official batch-1 loop. ≤ 1e-5 in fp32."""
    state_dict = random_weights(1, **config)
    name, model, params = load(state_dict, config["scale"])
    assert name == "DLGSANet"
    params.update(tlc_kernel=config["tlc_kernel"], activation=config.get("activation", "relu"))
    model = DLGSANet(**params)
    model.load_state_dict(state_dict, strict=True)
    getattr(model, mode)()
    x = image(2, *size, batch=2)
    with torch.no_grad():
        got = model(x)
    expected = reference.dlgsanet(
        state_dict,
        x,
        tlc_kernel=config["tlc_kernel"] if mode == "eval" else None,
        activation=config.get("activation", "relu"),
    )
    assert got.shape == (2, 3, size[0] * config["scale"], size[1] * config["scale"])
    assert (got.double() - expected).abs().max().item() < 1e-5


def test_crops_matter_only_on_maps_larger_than_them():
    """Eval (TLC) differs from train (whole map) once the map exceeds the crop, not before."""
    config = CASES[0][0]
    results = {}
    for kernel in (8, 48):
        model = DLGSANet(**dict(config, tlc_kernel=kernel))
        model.load_state_dict(random_weights(9, **config))
        x = image(10, 19, 23)
        with torch.no_grad():
            results[kernel] = (model.eval()(x) - model.train()(x)).abs().max().item()
    assert results[8] > 1e-3 and results[48] == 0


def test_settings_are_read_off_the_weights():
    config = CASES[1][0]
    params = dlgsanet.params_from_state_dict(random_weights(3, **config), None)
    assert params == {
        "in_chans": 3,
        "dim": 16,
        "groups": 1,
        "blocks": 2,
        "window_size": 5,
        "idynamic_num_heads": 4,
        "idynamic_ffn_expansion_factor": 42 / 16,
        "restormer_num_heads": 4,
        "restormer_ffn_expansion_factor": 1.5,
        "tlc_kernel": 48,
        "activation": "relu",
        "scale": 4,
        "img_range": 1.0,
        "upsampler": "pixelshuffle",
    }
    for scale, kernel in ((2, 96), (3, 72)):
        weights = random_weights(4, **dict(CASES[0][0], scale=scale))
        assert dlgsanet.params_from_state_dict(weights, scale)["tlc_kernel"] == kernel
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        dlgsanet.params_from_state_dict(random_weights(5, **CASES[0][0]), 2)


def test_detection_is_exclusive():
    from tests.helpers.foreign import preset_state_dicts

    ours = [random_weights(6, **config) for config, _ in CASES]
    for state_dict in ours:
        assert [f.name for f in archs.FAMILIES if f.detect(state_dict)] == ["DLGSANet"]
    for label, (family, state_dict) in preset_state_dicts().items():
        assert dlgsanet.detect(state_dict) == (family == "DLGSANet"), label
    partial = {k: v for k, v in ours[0].items() if "restormer_attn" not in k}
    assert not any(f.detect(partial) for f in archs.FAMILIES)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"buildblock_type": "edge"}, "buildblock_type must be 'sparseedge'"),
        ({"body_norm": True}, "body_norm must be False"),
        ({"upsampler": ""}, "upsampler must be one of"),
        ({"window_size": 6}, "window_size must be odd"),
        ({"dim": 20}, "must divide dim 20"),
        ({"activation": "softmax"}, "activation must be one of"),
    ],
)
def test_invalid_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        DLGSANet(**settings)


def test_presets_are_the_released_sizes():
    for name, preset in dlgsanet.FAMILY.presets.items():
        with torch.device("meta"):
            counts = tuple(
                sum(p.numel() for p in DLGSANet(**preset, scale=s).parameters()) for s in (2, 3, 4)
            )
        assert counts == PARAMS[name], name


def test_option_files_build_the_authors_networks():
    for kind, loader in (("test", load_test_options), ("train", load_train_options)):
        files = sorted((ROOT / "options" / kind / "DLGSANet").glob("*.yml"))
        assert len(files) == 9, kind
        for file in files:
            opt = loader(file)
            family, params = network_params(opt.network_g.type, opt.network_g.args)
            assert family is dlgsanet.FAMILY and params["scale"] == opt.scale
            assert params["tlc_kernel"] == {2: 96, 3: 72, 4: 48}[opt.scale]
            with torch.device("meta"):
                model = family.build(**params)
            preset = file.stem.split("_")[1]
            assert sum(p.numel() for p in model.parameters()) == PARAMS[preset][opt.scale - 2], file.name


def _train_options(tmp_path: Path, shared_dir: Path, total: int) -> Path:
    smoke = shared_dir / "data" / "DIV2K_smoke"
    text = f"""
name: dlgsanet
scale: 2
num_gpu: 0
manual_seed: 3
datasets:
  train:
    name: smoke
    type: BicubicHRDataset
    dataroot_gt: {smoke / "HR"}
    gt_size: 32
    use_hflip: true
    use_rot: true
    num_worker_per_gpu: 0
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 4
network_g: {{type: DLGSANet, upscale: 2, dim: 12, groups: 1, blocks: 1, idynamic_num_heads: 3,
  restormer_num_heads: 2, buildblock_type: sparseedge, tlc_kernel: 8}}
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: !!float 5e-4, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [2], gamma: 0.5}}
  total_iter: {total}
  pixel_opt: {{type: L1Loss}}
logger: {{print_freq: 1, save_checkpoint_freq: 3, use_tb_logger: false}}
path: {{experiments_root: {tmp_path / "run"}}}
"""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / f"dlgsanet_{total}.yml"
    path.write_text(text)
    return path


def test_a_few_training_iterations_run_and_the_checkpoint_loads(tmp_path, shared_dir):
    from sr.train import distributed
    from sr.train.trainer import Trainer

    options = _train_options(tmp_path, shared_dir, total=3)
    trainer = Trainer(load_train_options(options, []), options)
    try:
        with redirect_stdout(io.StringIO()):
            result = trainer.run()
    finally:
        distributed.teardown(trainer.dist)
    before = DLGSANet(
        **network_params(
            "DLGSANet",
            {
                "upscale": 2,
                "dim": 12,
                "groups": 1,
                "blocks": 1,
                "idynamic_num_heads": 3,
                "restormer_num_heads": 2,
            },
        )[1]
    )
    trained = result.model.state_dict()
    assert trained.keys() == before.state_dict().keys()
    assert all(torch.isfinite(v).all() for v in trained.values())
    net = sr.load_model(result.root / "models" / "net_g_3.safetensors")
    assert net.family == "DLGSANet" and net.scale == 2 and net.params["tlc_kernel"] == 8
    x = image(7, 21, 18)
    with torch.no_grad():
        assert (net.model(x) - result.ema.eval()(x)).abs().max().item() < 1e-6


def test_export_lays_out_the_crops_at_the_runtime_size(tmp_path):
    """Traced at 19x19 with 8-pixel TLC crops (3x3 crops), checked in ONNX Runtime at three other sizes and
    so other crop grids (2x3, 2x2, 4x4)."""
    from sr.onnx.export import export

    torch.manual_seed(8)
    model = DLGSANet(**dict(CASES[0][0], scale=2)).eval()
    model.load_state_dict(random_weights(8, **dict(CASES[0][0], scale=2)))
    net = sr.LoadedModel(model, "DLGSANet", 2, {}, 1, False, False, "small")
    report = export(net, tmp_path / "m.onnx")
    assert len(report.checks) == 3 and report.export_shape not in [c.shape for c in report.checks]
    assert all(c.max_abs_diff <= 1e-4 for c in report.checks)
