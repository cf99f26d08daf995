"""DRCT: parity with spandrel's copy of the official network through our detecting loader (.pth and
safetensors), presets and parameter counts, detection against every other family, clear errors, attention
through kernels, option files and a one-iteration training run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archs
import kernels
import sr
from archs import MissingHyperParameter, drct
from archs.drct import DRCT
from sr.loading import ModelLoadError, network_params
from sr.options import load_test_options, load_train_options
from tests.helpers.attention import backends_agree, trace_attention
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

ROOT = Path(__file__).resolve().parents[1]

# Parameter counts of our builds (equal to spandrel's builds of the same configs: a full-size spandrel build
# takes seconds, so `test_presets_build_with_the_published_sizes` compares one full-width group with it).
PARAMS = {
    ("DRCT", 2): 13_991_867,
    ("DRCT", 3): 14_176_507,
    ("DRCT", 4): 14_139_579,
    ("DRCT-L", 2): 27_433_007,
    ("DRCT-L", 3): 27_617_647,
    ("DRCT-L", 4): 27_580_719,
}


@pytest.fixture(scope="module")
def spandrel():
    install_torchvision_stub()
    return pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the DRCT oracle; CI installs it")


def case(scale: int, embed: int, gc: int, heads: tuple, window: int, mlp: float, **extra) -> dict:
    """What `params_from_state_dict` should return for a config (the official defaults for the rest)."""
    return {
        "scale": scale,
        "in_chans": 3,
        "embed_dim": embed,
        "num_heads": heads,
        "window_size": window,
        "mlp_ratio": mlp,
        "gc": gc,
        "qkv_bias": True,
        "patch_norm": True,
        "img_range": 1.0,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv",
        **extra,
    }


CASES = [
    # DRCT's own head pattern (6, 4, 2, 6, 4 from num_heads 6, embed 180, gc 32) on a 24/8 shrink, 3 groups
    case(4, 24, 8, (6, 6, 6), 8, 2.0),
    # heads 3, 2, 1, 3, 2 (one head in the middle block)
    case(2, 12, 4, (3,), 4, 2.0),
    case(3, 16, 6, (4, 2), 4, 1.5, qkv_bias=False, patch_norm=False, resi_connection="identity"),
    case(2, 12, 4, (2,), 4, 2.0, in_chans=1),
]
IDS = ["x4-3groups-w8", "x2-w4", "x3-nobias-nonorm-identity", "x2-gray"]

# Noise on the learned parameters: strong in attention so that the position bias, the shift masks and the
# head split move the output well beyond the parity tolerance.
NOISE = {"relative_position_bias_table": 0.5, "attn.qkv.weight": 0.3, "attn.proj.weight": 0.2}


def official(spandrel, params: dict, seed: int = 0) -> nn.Module:
    """spandrel's copy of the official DRCT for `params` (built for 2-window patches, so it saves its shift
    masks as the released files do) with every learned parameter perturbed."""
    torch.manual_seed(seed)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items() if k != "scale"}
    model = spandrel.architectures.DRCT.DRCT(
        upscale=params["scale"],
        img_size=2 * params["window_size"],
        depths=[6] * len(params["num_heads"]),
        **kwargs,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = next((std for part, std in NOISE.items() if name.endswith(part)), 0.02)
            p.add_(torch.randn_like(p) * std)
    return model.eval()


def run_official(model: nn.Module, x: torch.Tensor, window: int, scale: int) -> torch.Tensor:
    """The official test path: DRCTModel reflect-pads to a window multiple, the network runs, the output is
    cropped back."""
    h, w = x.shape[2:]
    padded = F.pad(x, (0, (window - w % window) % window, 0, (window - h % window) % window), mode="reflect")
    with torch.no_grad():
        return model(padded)[:, :, : h * scale, : w * scale]


def image(seed: int, channels: int = 3, h: int = 19, w: int = 27, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("params", CASES, ids=IDS)
def test_matches_official_through_the_loader(spandrel, tmp_path, params):
    """Released files keep the EMA weights under params_ema (and the raw ones under params)."""
    ema, raw = official(spandrel, params, seed=1), official(spandrel, params, seed=2)
    path = tmp_path / "weights.pth"  # no scale in the name: the loader reads it off the weights
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)
    loaded = sr.load_model(path)
    assert loaded.family == "DRCT" and loaded.scale == params["scale"] and loaded.params == params
    window, scale = params["window_size"], params["scale"]
    for h, w in ((19, 27), (2 * window, 3 * window)):  # not a window multiple, then one
        x = image(3, params["in_chans"], h, w)
        with torch.no_grad():
            got = loaded.model(x)
        expected = run_official(ema, x, window, scale)
        assert got.shape == expected.shape == (2, params["in_chans"], h * scale, w * scale)
        assert (got - expected).abs().max().item() <= 1e-5
    assert (expected - run_official(raw, x, window, scale)).abs().max().item() > 1e-2  # EMA copy matters


def test_safetensors_with_both_copies(spandrel, tmp_path):
    """A trainer's safetensors file with `params` and `params_ema` prefixes: the EMA copy is loaded."""
    from safetensors.torch import save_file

    params = CASES[1]
    ema, raw = official(spandrel, params, seed=3), official(spandrel, params, seed=4)
    tensors = {f"params_ema.{k}": v.contiguous() for k, v in ema.state_dict().items()}
    tensors |= {f"params.{k}": v.contiguous() for k, v in raw.state_dict().items()}
    save_file(tensors, str(tmp_path / "DRCT_random.safetensors"))
    loaded = sr.load_model(tmp_path / "DRCT_random.safetensors")
    assert loaded.family == "DRCT" and loaded.params == params
    x = image(5, h=21, w=18, batch=1)
    with torch.no_grad():
        got = loaded.model(x)
    assert (got - run_official(ema, x, 4, 2)).abs().max().item() <= 1e-5


def test_state_dict_is_the_official_one_without_rebuilt_buffers(spandrel):
    params = CASES[0]
    theirs = official(spandrel, params).state_dict()
    ours = DRCT(**params).state_dict()
    kept = {k: v.shape for k, v in theirs.items() if not drct.ignored_keys(k)}
    assert {k: v.shape for k, v in ours.items()} == kept
    dropped = sorted({k.split(".")[-1] for k in theirs if drct.ignored_keys(k)})
    assert dropped == ["attn_mask", "relative_position_index"]
    assert [k for k in theirs if k.endswith("attn_mask")][:2] == [
        "layers.0.swin2.attn_mask",
        "layers.0.swin4.attn_mask",
    ]


def test_heads_follow_the_official_rule():
    """num_heads − width mod num_heads for blocks 2–5: 6, 4, 2, 6, 4 heads in the released DRCT."""
    with torch.device("meta"):
        group = DRCT(**drct.FAMILY.presets["DRCT"]).layers[0]
    blocks = [getattr(group, f"swin{i}") for i in range(1, 6)]
    assert [b.attn.relative_position_bias_table.shape[1] for b in blocks] == [6, 4, 2, 6, 4]
    assert [b.attn.qkv.in_features for b in blocks] == [180, 212, 244, 276, 308]
    assert [b.mlp.fc1.out_features for b in blocks] == [360, 424, 488, 276, 308]  # MLP ratio 1 in 4 and 5
    assert [b.shift_size for b in blocks] == [0, 8, 0, 8, 0]


def test_presets_build_with_the_published_sizes(spandrel):
    for (name, scale), count in PARAMS.items():
        with torch.device("meta"):
            model = DRCT(scale=scale, **drct.FAMILY.presets[name])
        assert sum(p.numel() for p in model.parameters()) == count, (name, scale)
    # README (ming053l/DRCT c0a8b51), x4: DRCT 14.13M, DRCT-L 27.58M (truncated to two decimals)
    assert math.floor(PARAMS["DRCT", 4] / 1e4) == 1413 and math.floor(PARAMS["DRCT-L", 4] / 1e4) == 2758
    config = dict(drct.FAMILY.presets["DRCT"], num_heads=(6,))  # one full-width group
    ours = DRCT(scale=4, **config).state_dict()
    theirs = spandrel.architectures.DRCT.DRCT(
        upscale=4,
        img_size=64,
        depths=[6],
        **{k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
    ).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {
        k: v.shape for k, v in theirs.items() if not drct.ignored_keys(k)
    }


def test_preset_weights_are_inferred_back():
    for name in drct.FAMILY.presets:
        with torch.device("meta"):
            state_dict = DRCT(scale=3, **drct.FAMILY.presets[name]).state_dict()
        params = drct.params_from_state_dict(state_dict, None)
        assert {k: params[k] for k in drct.FAMILY.presets[name]} == drct.FAMILY.presets[name]
        assert params["scale"] == 3


def test_detection_is_ours_alone(spandrel):
    for params in CASES:
        for state_dict in (official(spandrel, params).state_dict(), DRCT(**params).state_dict()):
            assert [family.name for family in archs.FAMILIES if family.detect(state_dict)] == ["DRCT"]
    for name, state_dict in foreign_state_dicts("DRCT").items():
        assert not drct.detect(state_dict), name


def test_weights_that_cannot_tell_a_setting_are_clear_errors(spandrel, tmp_path):
    state_dict = official(spandrel, CASES[2]).state_dict()
    assert drct.params_from_state_dict(state_dict, 3)["scale"] == 3
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        drct.params_from_state_dict(state_dict, 2)
    headless = {
        k: v for k, v in state_dict.items() if not k.startswith(("upsample.", "conv_before_", "conv_last"))
    }
    assert drct.detect(headless)
    torch.save({"params_ema": headless}, tmp_path / "headless.pth")
    with pytest.raises(ModelLoadError, match="no pixel-shuffle upsampler") as error:
        sr.load_model(tmp_path / "headless.pth")
    assert "\n" not in str(error.value)
    table = "layers.0.swin1.attn.relative_position_bias_table"
    with pytest.raises(MissingHyperParameter, match="window size: .* 50 rows"):
        drct.params_from_state_dict(dict(state_dict, **{table: torch.zeros(50, 4)}))
    index = "layers.0.swin1.attn.relative_position_index"
    with pytest.raises(MissingHyperParameter, match="window size: .*relative_position_index"):
        drct.params_from_state_dict(dict(state_dict, **{index: torch.zeros(9, 9, dtype=torch.long)}))
    # Built for patches no larger than the window, the official model drops its shifts (and masks)
    unshifted = spandrel.architectures.DRCT.DRCT(
        upscale=3,
        img_size=4,
        embed_dim=16,
        gc=6,
        num_heads=[4],
        depths=[6],
        window_size=4,
        upsampler="pixelshuffle",
    ).state_dict()
    assert drct.detect(unshifted) and not any(k.endswith("attn_mask") for k in unshifted)
    with pytest.raises(MissingHyperParameter, match="turns window shifting off"):
        drct.params_from_state_dict(unshifted)
    # Our own checkpoints hold no buffers at all: shifted, as every released model
    assert drct.params_from_state_dict(DRCT(**CASES[2]).state_dict())["window_size"] == 4


def test_unusable_settings_are_refused():
    with pytest.raises(ValueError, match="17-channel DRCT block gets 3 heads"):
        DRCT(embed_dim=10, gc=7, num_heads=(5,), window_size=4)  # upstream fails in its first forward
    with pytest.raises(ValueError, match="pixelshuffle"):
        DRCT(upsampler="")
    with pytest.raises(ValueError, match="differ in length"):
        DRCT(embed_dim=12, gc=4, num_heads=(2, 2), depths=(6,), window_size=4)


def test_all_attention_goes_through_kernels(monkeypatch):
    params = CASES[0]
    torch.manual_seed(3)
    model = DRCT(**params).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    x = image(4, h=9, w=14, batch=1)  # padded to 16×16: 4 windows of 64 tokens
    calls, outputs = trace_attention(monkeypatch, kernels, model, x)
    # (heads, tokens, head dim, shifted) per block: widths 24, 32, 40, 48, 56 with 6, 4, 2, 6, 4 heads
    group = [(6, 64, 4, False), (4, 64, 8, True), (2, 64, 20, False), (6, 64, 8, True), (4, 64, 14, False)]
    assert [(*c.q[1:], c.mask is not None) for c in calls] == group * len(params["num_heads"])
    assert backends_agree(outputs)


def test_bfloat16_autocast_runs():
    torch.manual_seed(5)
    model = DRCT(**CASES[1]).eval()
    x = image(6, h=9, w=14, batch=1)
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x).float()
    assert torch.isfinite(half).all() and (half - full).abs().max().item() < 0.1


TEST_OPTIONS = sorted((ROOT / "options/test/DRCT").glob("*.yml"))
TRAIN_OPTIONS = sorted((ROOT / "options/train/DRCT").glob("*.yml"))


def test_option_files_cover_the_official_ones():
    """Every official options/test and options/train file of DRCT and DRCT-L but the custom-folder
    DRCT_SRx4_ImageNet-LR (no ground truth) and the Real-DRCT GAN runs (degradation pipeline, GAN losses)."""
    tests = [f"DRCT_SRx{s}{suffix}" for s in (2, 3, 4) for suffix in ("", "_ImageNet-pretrain")]
    tests += [f"DRCT-L_SRx{s}_ImageNet-pretrain" for s in (2, 3, 4)]
    assert sorted(p.name for p in TEST_OPTIONS) == sorted(f"test_{stem}.yml" for stem in tests)
    trains = [
        f"{v}_SRx{s}_{kind}"
        for v in ("DRCT", "DRCT-L")
        for s in (2, 3, 4)
        for kind in ("ImageNet_from_scratch", "finetune_from_ImageNet_pretrain")
    ]
    trains += [
        "DRCT_SRx2_from_scratch",
        "DRCT_SRx3_from_scratch",
        "DRCT_SRx4_from_scratch",
        "DRCT_SRx4_finetune_from_SRx2",
    ]
    assert sorted(p.name for p in TRAIN_OPTIONS) == sorted(f"train_{stem}.yml" for stem in trains)


@pytest.mark.parametrize("path", TEST_OPTIONS + TRAIN_OPTIONS, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    options = load_test_options(path) if path.name.startswith("test_") else load_train_options(path)
    family, params = network_params(options.network_g.type, options.network_g.args)
    variant = "DRCT-L" if "DRCT-L" in path.stem else "DRCT"
    assert family is drct.FAMILY and options.network_g.args["depths"] == [6] * len(params["num_heads"])
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k != "depths"}
    assert params == dict(drct.FAMILY.presets[variant], scale=options.scale, in_chans=3, img_range=1.0)
    metrics = options.val.metrics.values()
    assert all(m.crop_border == options.scale and m.test_y_channel for m in metrics)
    if path.name.startswith("test_"):
        stem = path.stem.removeprefix("test_")
        assert options.path.pretrain_network_g == f"experiments/pretrained_models/DRCT/{stem}.pth"
        assert options.path.param_key_g == "params_ema"


@pytest.mark.slow
def test_official_training_options_run_one_iteration_shrunk(tmp_path, shared_dir):
    """train_DRCT_SRx4_from_scratch.yml (the official batch 4 and 64-pixel LR patches) trains one iteration
    with the network shrunk and the data pointed at DIV2K_smoke."""
    smoke = shared_dir / "data" / "DIV2K_smoke"
    overrides = [
        f"path:experiments_root={tmp_path / 'run'}",
        f"datasets:train:dataroot_gt={smoke / 'HR'}",
        f"datasets:train:dataroot_lq={smoke / 'LR_bicubic/X4'}",
        "datasets:train:filename_tmpl='{}'",
        "datasets:train:dataset_enlarge_ratio=100",
        "network_g:embed_dim=12",
        "network_g:gc=4",
        "network_g:num_heads=[3, 3]",
        "network_g:depths=[6, 6]",
        "train:total_iter=1",
        "val:val_freq=~",
    ]
    command = [
        sys.executable,
        "-m",
        "sr",
        "train",
        "-opt",
        str(ROOT / "options/train/DRCT/train_DRCT_SRx4_from_scratch.yml"),
        "--threads",
        os.environ.get("SR_TEST_THREADS", "1"),
        "--no-plot",
    ]
    for override in overrides:
        command += ["--force-yml", override]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    saved = tmp_path / "run" / "models" / "net_g_1.safetensors"
    loaded = sr.load_model(saved)
    assert loaded.family == "DRCT" and loaded.scale == 4 and loaded.params["num_heads"] == (3, 3)
