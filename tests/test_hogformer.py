"""HOGformer: equal to a float64 transcription of the official code, settings read off the weights, detection
both ways, `sr restore` and `sr export` with a tiny saved model, option files and a shrunk training run.

The transcription (tests/oracles/hogformer_reference.py) follows Fire-friend/HOGformer @be6fd81
`settingI/basicsr/models/archs/hogformer_arch.py` and the padding of its test script. Against the authors'
module itself (run out of the repository on the configurations below plus 29x53, 40x24 and 17x33 inputs, fp32,
1 thread, weights perturbed by 0.02 and 0.1): max abs difference 0.0 in fp32, and 0.0 in float64 (the official
file with its HOG buffer made in the input's dtype, the one change it needs to run in float64). The network
sorts pixels by gradient keys, so its output jumps where two keys swap: a 1e-7 change of the input moves the
official fp32 output by up to 1e-2, which is why fp32 is compared with the same computation in fp32.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import archs
import sr
from archs import MissingHyperParameter, hogformer
from archs.hogformer import HOGformer
from sr.checkpoint import SETTINGS_KEY
from sr.cli import main
from sr.imageio import Image, read_image, write_image
from sr.loading import network_params
from sr.options import load_test_options, load_train_options
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles import hogformer_reference as reference

ROOT = Path(__file__).resolve().parents[1]
# The official structure shrunk: four levels, the official heads, 2.667 (hidden widths 32/64/128/256); and
# a second with bias, bias-free norms and several blocks on one level.
CONFIGS = [
    {"dim": 12, "num_blocks": [1, 1, 1, 2], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8]},
    {
        "dim": 8,
        "num_blocks": [2, 1, 1, 1],
        "num_refinement_blocks": 1,
        "heads": [1, 2, 2, 4],
        "ffn_expansion_factor": 2.0,
        "bias": True,
        "LayerNorm_type": "BiasFree",
    },
]
# 32x48: a multiple of 16 (no outer pad) whose 8x8 cells are padded at levels 3 and 4; 17x33: reflect-padded
# to 32x48 as the official test script does, then cropped.
SIZES = [(32, 48), (17, 33)]
FULL = {"ffn_expansion_factor": 2.667, "bias": False, "LayerNorm_type": "WithBias", "inp_channels": 3}


def random_weights(seed: int, **config) -> dict[str, torch.Tensor]:
    """A seeded model's weights, each moved off its initial value (unit temperatures, zero biases)."""
    torch.manual_seed(seed)
    model = HOGformer(**config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.state_dict()


def image(seed: int, h: int, w: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("config", "size"), list(zip(CONFIGS, SIZES, strict=True)), ids=["official", "bias"])
def test_matches_the_official_transcription(config, size):
    state_dict = random_weights(1, **config)
    bias_free = config.get("LayerNorm_type") == "BiasFree"
    model = HOGformer(**config).eval()
    model.load_state_dict(state_dict, strict=True)
    x = image(2, *size, batch=2)
    with torch.no_grad():
        got = model(x)
        assert got.shape == x.shape
        expected = reference.hogformer(state_dict, x, bias_free=bias_free, dtype=torch.float32)
        assert (got - expected).abs().max().item() <= 1e-5
        got64 = model.double()(x.double())
    assert (got64 - reference.hogformer(state_dict, x, bias_free=bias_free)).abs().max().item() < 1e-10


@pytest.mark.parametrize("config", CONFIGS, ids=["official", "bias"])
def test_settings_come_from_the_weights(config):
    with torch.device("meta"):
        state_dict = HOGformer(**config).state_dict()
    params = hogformer.params_from_state_dict(state_dict, None)
    expected = {**FULL, "out_channels": 3, "dual_pixel_task": False, "scale": 1, **config}
    expected.pop("LayerNorm_type")  # not in the weights: an `unstored` setting
    assert params == expected
    HOGformer(**params).to("meta").load_state_dict(state_dict, strict=True)


@pytest.mark.parametrize(("dim", "factor"), [(36, 2.667), (48, 2.66), (8, 3.0), (16, 2.5)])
def test_expansion_factor_gives_the_hidden_widths(dim, factor):
    with torch.device("meta"):
        model = HOGformer(
            dim=dim, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, ffn_expansion_factor=factor
        )
    found = hogformer.params_from_state_dict(model.state_dict(), None)["ffn_expansion_factor"]
    assert all(int(d * found) == int(d * factor) for d in (dim, 2 * dim, 4 * dim, 8 * dim))
    assert found == factor


def test_official_preset_and_dual_pixel_keys():
    preset = hogformer.FAMILY.presets["HOGformer"]
    with torch.device("meta"):
        state_dict = HOGformer(**preset, dual_pixel_task=True).state_dict()
    assert "encoder_level1.0.attn_g_spatial.sobel_x" in state_dict  # buffers the official files store
    params = hogformer.params_from_state_dict(state_dict, None)
    stored = {k: v for k, v in preset.items() if k != "LayerNorm_type"}
    assert params["dual_pixel_task"] and {k: params[k] for k in stored} == stored
    with pytest.raises(MissingHyperParameter, match="scale 1, not x4"):
        hogformer.params_from_state_dict(state_dict, 4)


def test_detection_is_exclusive():
    state_dict = random_weights(3, **CONFIGS[0])
    assert [f.name for f in archs.FAMILIES if f.detect(state_dict)] == ["HOGformer"]
    for name, foreign in foreign_state_dicts("HOGformer").items():
        assert not hogformer.detect(foreign), name
    assert not hogformer.detect({k: v for k, v in state_dict.items() if ".bin_proj." not in k})


def tiny_hogformer(path: Path, settings: dict | None = None, **config) -> Path:
    """A small HOGformer with random weights whose output stays near its input, saved at `path`."""
    state = random_weights(4, **(config or CONFIGS[0]))
    state["output.weight"] = state["output.weight"] * 0.05
    if path.suffix == ".safetensors":
        save_file(
            {k: v.contiguous() for k, v in state.items()}, str(path), {SETTINGS_KEY: json.dumps(settings)}
        )
    else:
        torch.save({"params": state}, path)
    return path


def test_layer_norm_type_comes_from_metadata(tmp_path):
    config = dict(CONFIGS[1])
    config.pop("LayerNorm_type")
    path = tiny_hogformer(tmp_path / "hog.safetensors", {"LayerNorm_type": "BiasFree"}, **config)
    net = sr.load_model(path)
    assert (net.family, net.scale, net.params["LayerNorm_type"]) == ("HOGformer", 1, "BiasFree")
    plain = sr.load_model(tiny_hogformer(tmp_path / "hog.pth", **config))
    assert "LayerNorm_type" not in plain.params and not plain.model.refinement[0].bias_free


def test_sr_restore_runs_a_tiny_hogformer(tmp_path):
    model = tiny_hogformer(tmp_path / "tiny_hogformer.pth")
    rng = np.random.default_rng(0)
    pixels = np.clip(np.linspace(0, 1, 30)[None, :, None] + 0.1 * rng.standard_normal((20, 30, 3)), 0, 1)
    write_image(tmp_path / "in.png", Image(pixels.astype(np.float32)))
    out = tmp_path / "out"
    assert (
        main(["restore", str(tmp_path / "in.png"), "-o", str(out), "-m", str(model), "--threads", "1"]) == 0
    )
    restored = read_image(out / "in_restored.png").pixels
    net = sr.load_model(model)
    with torch.no_grad():
        direct = net.model(torch.from_numpy(read_image(tmp_path / "in.png").pixels).permute(2, 0, 1)[None])
    expected = direct[0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert restored.shape == (20, 30, 3) and np.abs(restored - expected).max() <= 0.5 / 255 + 1e-6


@pytest.mark.slow
def test_sr_export_verifies_in_onnx_runtime(tmp_path, capsys):
    """One head per level, as in tests/test_onnx.py: where heads cut the sorted sequence, a last-bit
    difference between ONNX Runtime and PyTorch that swaps two sort keys moves the output by ~1e-2."""
    pytest.importorskip("onnxruntime")
    config = {"dim": 12, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 0, "heads": [1, 1, 1, 1]}
    model = tiny_hogformer(tmp_path / "tiny_hogformer.pth", **config)
    assert main(["export", "-m", str(model), "-o", str(tmp_path / "hog.onnx")]) == 0
    text = capsys.readouterr().out
    assert "exported HOGformer x1 (RGB)" in text and "traced at 35x43" in text
    assert text.count("ONNX Runtime vs PyTorch at") == 3


def test_option_files_build_the_official_network():
    for path in sorted((ROOT / "options").glob("*/HOGformer/*.yml")):
        options = load_test_options(path) if path.name.startswith("test_") else load_train_options(path)
        family, params = network_params(options.network_g.type, options.network_g.args)
        assert family is hogformer.FAMILY and options.scale == 1, path.name
        assert {k: params[k] for k in family.presets["HOGformer"]} == family.presets["HOGformer"], path.name


@pytest.mark.slow
def test_training_options_run_a_few_iterations_shrunk(tmp_path, shared_dir):
    """train_HOGformer_Allweather.yml (AdamW, L1, gradient clipping at 0.01) trains two iterations with the
    network shrunk, smaller patches and batches, and identity pairs from DIV2K_smoke."""
    hr = shared_dir / "data" / "DIV2K_smoke" / "HR"
    overrides = [
        f"path:experiments_root={tmp_path / 'run'}",
        f"datasets:train:dataroot_gt={hr}",
        f"datasets:train:dataroot_lq={hr}",
        "datasets:train:gt_size=32",
        "datasets:train:batch_size_per_gpu=2",
        "datasets:train:num_worker_per_gpu=0",
        "datasets:train:dataset_enlarge_ratio=10",
        "network_g:dim=8",
        "network_g:num_blocks=[1, 1, 1, 1]",
        "network_g:num_refinement_blocks=1",
        "network_g:ffn_expansion_factor=2.0",
        "train:total_iter=2",
        "val:val_freq=~",
    ]
    command = [
        sys.executable,
        "-m",
        "sr",
        "train",
        "-opt",
        str(ROOT / "options/train/HOGformer/train_HOGformer_Allweather.yml"),
    ]
    command += ["--threads", os.environ.get("SR_TEST_THREADS", "1"), "--no-plot"]
    for override in overrides:
        command += ["--force-yml", override]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = sr.load_model(tmp_path / "run" / "models" / "net_g_2.safetensors")
    assert loaded.family == "HOGformer" and loaded.scale == 1 and loaded.params["num_blocks"] == [1, 1, 1, 1]
