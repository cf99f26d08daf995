"""Histoformer: the official forward (a float64 transcription, padding paths included), detection both ways,
hyper-parameters from the weights, `sr restore`, `sr export` to ONNX, option files, and a short training run.

Parity with the authors' module itself (sunshangquan/Histoformer @1f045f0 `histoformer_arch.py`, run out of
the repository under `Allweather/test_histoformer.py`'s padding): the outputs were bit-identical (max abs
difference 0.0 in fp32 and in fp64) on four random configurations: the CASES' networks (the third at
17x22) and one more at 32x40, by a script out of the repository loading the official module's random
weights into ours through detection (torch 2.13 CPU). That module cannot be imported in CI; the
transcription in tests/oracles/histoformer_reference.py stands in for it.
"""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml

import archs
import sr
from archs import MissingHyperParameter, histoformer
from archs.histoformer import Histoformer, HistogramAttention
from sr.checkpoint import read_state_dict
from sr.cli import main
from sr.imageio import Image, read_image, write_image
from sr.loading import load_configured_model, network_params
from sr.options import load_test_options, load_train_options
from tests.helpers.detect import load
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles import histoformer_reference as reference

ROOT = Path(__file__).resolve().parents[1]
# Released structure, shrunk. The sizes exercise both padding paths: the reflect padding to a multiple of 8
# (20x29 → 24x32, 13x21 → 16x24; 16x24 needs none) and the zero padding of each attention's sequence to a
# multiple of its heads (24x32: the 3x4 latent, 12 positions for 8 heads → 16; 16x24: 2x3 for 4 heads → 8;
# 16x24 with heads 1, 3, 3, 6: none). Case 1 has biases and the 'BiasFree' norm.
CASES = [
    (
        {"dim": 6, "num_blocks": (1, 2, 1, 2), "num_refinement_blocks": 1, "heads": (1, 2, 4, 8)},
        "WithBias",
        (20, 29),
    ),
    (
        {
            "dim": 12,
            "num_blocks": (2, 1, 1, 1),
            "num_refinement_blocks": 2,
            "heads": (2, 2, 4, 4),
            "ffn_expansion_factor": 2.0,
            "bias": True,
        },
        "BiasFree",
        (13, 21),
    ),
    (
        {"dim": 6, "num_blocks": (1, 1, 2, 1), "num_refinement_blocks": 0, "heads": (1, 3, 3, 6)},
        "WithBias",
        (16, 24),
    ),
]
PRESET_PARAMETERS = 16_615_100  # the official module built with Allweather_Histoformer.yml's network_g


def random_weights(seed: int, config: dict, norm: str = "WithBias", scale: float = 0.1) -> dict:
    """A seeded model's weights with every parameter moved off its initial value."""
    torch.manual_seed(seed)
    model = Histoformer(**config, LayerNorm_type=norm)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.state_dict()


def image(seed: int, h: int, w: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(seed))


def expected_params(config: dict) -> dict:
    return {
        "inp_channels": 3,
        "out_channels": 3,
        "ffn_expansion_factor": 2.667,
        "bias": False,
        "LayerNorm_type": "WithBias",
        "scale": 1,
        **config,
    }


@pytest.mark.parametrize(("config", "norm", "size"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_the_official_forward(config, norm, size):
    """Detected, read and strictly loaded from the weights alone; float64 output equal to the transcription
    (value sorts on both sides see the same numbers only in the same precision)."""
    state_dict = random_weights(size[0], config, norm)
    name, model, params = load(state_dict)
    assert name == "Histoformer" and params == expected_params(config)
    if norm != "WithBias":  # not in the weights (the norms hold none): a setting, as from a file's metadata
        model = Histoformer(**dict(params, LayerNorm_type=norm))
        model.load_state_dict(state_dict, strict=True)
    x = image(7, *size, batch=2)
    with torch.no_grad():
        got = model.double().eval()(x.double())
    want = reference.histoformer(state_dict, x, norm)
    assert got.shape == x.shape
    assert (got - want).abs().max().item() < 1e-10


def test_histogram_attention_alone():
    """One attention whose sequence needs padding (35 positions for 4 bins) equals the transcription's."""
    torch.manual_seed(3)
    attention = HistogramAttention(8, 4, bias=False).double().eval()
    x = torch.randn(1, 8, 5, 7, dtype=torch.float64)  # 35 positions: padded to 36 for 4 bins
    state = {f"a.{k}": v for k, v in attention.state_dict().items()}
    with torch.no_grad():
        got = attention(x)
    assert (got - reference.attention(state, "a", x)).abs().max().item() < 1e-12


def test_detection_is_exclusive():
    """Ours (with and without biases) are Histoformer's alone; every other family's presets and official
    modules, Restormer, and blocks with a weight missing or one too many are not."""
    ours = [random_weights(1, CASES[0][0]), random_weights(2, CASES[1][0])]
    for state_dict in ours:
        assert [f.name for f in archs.FAMILIES if f.detect(state_dict)] == ["Histoformer"]
    for label, state_dict in foreign_state_dicts("Histoformer").items():
        assert not histoformer.detect(state_dict), label
    # Restormer, the network Histoformer grew from (same U-Net keys, other blocks): no family of ours.
    from tests.oracles.torchvision_stub import install

    install()
    extra = pytest.importorskip("spandrel_extra_arches", reason="spandrel_extra_arches holds Restormer")
    restormer = extra.architectures.Restormer.Restormer(
        dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1
    )
    assert not [f.name for f in archs.FAMILIES if f.detect(restormer.state_dict())]
    block = {k: v for k, v in ours[0].items() if not k.startswith("encoder_level1.0.ffn.dwconv_5")}
    assert not histoformer.detect(block)
    extra_key = dict(ours[0], **{"encoder_level1.0.attn_g.extra.weight": torch.zeros(1)})
    assert not histoformer.detect(extra_key)


def test_the_preset_is_the_released_network():
    with torch.device("meta"):
        model = Histoformer(**histoformer.FAMILY.presets["Histoformer"])
    assert sum(p.numel() for p in model.parameters()) == PRESET_PARAMETERS
    params = histoformer.params_from_state_dict(model.state_dict(), None)
    assert params == expected_params(histoformer.FAMILY.presets["Histoformer"])


def test_expansion_factor_is_read_from_the_hidden_widths():
    released = {36: 96, 72: 192, 144: 384, 288: 768}
    assert histoformer.expansion_factor(released) == 2.667
    restormer_like = {48: 127, 96: 255, 192: 510, 384: 1021}  # int(width * 2.66), Restormer's default
    factor = histoformer.expansion_factor(restormer_like)
    assert all(int(width * factor) == hidden for width, hidden in restormer_like.items())
    with pytest.raises(MissingHyperParameter, match="no ffn_expansion_factor"):
        histoformer.expansion_factor({36: 96, 72: 150})


def test_what_the_weights_cannot_be_is_refused():
    state_dict = random_weights(4, CASES[0][0])
    with pytest.raises(MissingHyperParameter, match="scale 1, not x2"):
        histoformer.params_from_state_dict(state_dict, 2)
    assert histoformer.params_from_state_dict(state_dict, 1)["scale"] == 1
    for settings, message in (
        ({"scale": 4}, "scale 1, not x4"),
        ({"dual_pixel_task": True}, "dual_pixel_task"),
        ({"LayerNorm_type": "Group"}, "LayerNorm_type"),
        ({"dim": 8}, "not a multiple of 4"),  # int(8 x 2.667) = 21
        ({"heads": (1, 5, 4, 8), "dim": 6}, "do not split"),
        ({"inp_channels": 1}, "RGB"),
    ):
        with pytest.raises(ValueError, match=message):
            Histoformer(**settings)


def tiny_model(path: Path, attention_scale: float = 1.0) -> Histoformer:
    """A small Histoformer saved at `path` as `params`; `attention_scale` multiplies every attention's output
    projection."""
    torch.manual_seed(11)
    model = Histoformer(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.02 * torch.randn_like(p))
            if name.endswith("attn_g.project_out.weight"):
                p.mul_(attention_scale)
    torch.save({"params": model.state_dict()}, path)
    return model


def test_restore_command_runs_it(tmp_path):
    model = tiny_model(tmp_path / "histoformer_tiny.pth")
    net = sr.load_model(tmp_path / "histoformer_tiny.pth")
    assert (net.family, net.scale, net.task, net.multiple_of) == ("Histoformer", 1, "restore", 8)
    assert not (net.supports_fp16 or net.supports_bf16)
    rng = np.random.default_rng(0)
    pixels = np.clip(np.linspace(0, 1, 30)[None, :, None] + 0.1 * rng.standard_normal((21, 30, 3)), 0, 1)
    write_image(tmp_path / "rainy.png", Image(pixels.astype(np.float32)))
    code = main(["restore", str(tmp_path / "rainy.png"), "-m", str(tmp_path / "histoformer_tiny.pth")])
    assert code == 0
    restored = read_image(tmp_path / "rainy_restored.png").pixels
    x = torch.from_numpy(read_image(tmp_path / "rainy.png").pixels).permute(2, 0, 1)[None]
    with torch.no_grad():
        direct = model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert restored.shape == (21, 30, 3) and np.abs(restored - direct).max() <= 1 / 255 + 1e-6


def test_export_verifies_in_onnx_runtime(tmp_path):
    """`sr export` traces once and checks three other sizes in ONNX Runtime (≤ 1e-4), here with the
    attention's output projection scaled by 1e-3: the network's output jumps where a value sort changes
    order, and fp32 rounding that differs between the two runtimes (~1e-7) changes some orders, so at full
    strength the two outputs differ by up to ~0.5 with random weights (as PyTorch's fp32 and fp64 outputs do).
    The attention itself, sorts, bins and padding included, is compared at full strength below."""
    tiny_model(tmp_path / "histoformer_tiny.pth", attention_scale=1e-3)
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["export", "-m", str(tmp_path / "histoformer_tiny.pth"), "-o", str(tmp_path / "h.onnx")])
    assert code == 0
    lines = out.getvalue().splitlines()
    traced = lines[0].split("traced at ")[1].split(",")[0]
    checks = [line for line in lines if "ONNX Runtime vs PyTorch at" in line]
    assert len(checks) == 3 and all(traced not in line.split(" at ")[1] for line in checks)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "h.onnx")).graph.node}
    assert {"TopK", "GatherElements", "ScatterElements", "Pad"} <= ops

    import onnxruntime

    torch.manual_seed(5)
    attention = HistogramAttention(8, 4, bias=True).eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            attention,
            (torch.randn(1, 8, 6, 6),),
            buffer,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}},
            opset_version=17,
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in ((1, 8, 5, 7), (2, 8, 7, 9)):  # 35 and 63 positions: padded to 36 and 64 for 4 bins
        x = torch.randn(*shape)
        with torch.no_grad():
            want = attention(x).numpy()
        assert np.abs(session.run(None, {"x": x.numpy()})[0] - want).max() < 1e-5


TEST_OPTIONS = ROOT / "options/test/Histoformer/test_Histoformer_Allweather.yml"
TRAIN_OPTIONS = ROOT / "options/train/Histoformer/train_Histoformer_Allweather.yml"
SETS = ["Snow100K-S", "Snow100K-L", "Test1", "RainDrop"]


def test_option_files_describe_the_released_network(tmp_path):
    preset = expected_params(histoformer.FAMILY.presets["Histoformer"])
    for path in (TEST_OPTIONS, TRAIN_OPTIONS):
        opt = load_test_options(path) if path == TEST_OPTIONS else load_train_options(path)
        assert opt.scale == 1 and opt.network_g.type == "Histoformer"
        family, params = network_params(opt.network_g.type, opt.network_g.args)
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        assert family is histoformer.FAMILY and dict(params, scale=1) == dict(preset, dual_pixel_task=False)
        assert [d.name for d in opt.datasets.values() if d.name in SETS] == SETS
        assert all(d.type == "PairedImageDataset" for d in opt.datasets.values())
    test = load_test_options(TEST_OPTIONS)
    assert test.tile.tile_size == 0 and test.path.param_key_g == "params"
    train = load_train_options(TRAIN_OPTIONS)
    assert (train.train.optim_g.type, train.train.optim_g.lr, train.train.grad_clip) == ("AdamW", 3e-4, 0.01)
    assert (train.datasets["train"].gt_size, train.datasets["train"].batch_size_per_gpu) == (128, 8)
    # The test file's network loads the weights of that shape strictly.
    weights = tmp_path / "net_g_best.pth"
    with torch.device("meta"):
        shapes = Histoformer(**histoformer.FAMILY.presets["Histoformer"]).state_dict()
    torch.save({"params": {k: torch.zeros(v.shape) for k, v in shapes.items()}}, weights)
    net = load_configured_model("Histoformer", dict(test.network_g.args, scale=1), weights, "params")
    assert net.scale == 1 and net.family == "Histoformer"


def paired_folders(root: Path, count: int = 3, size: int = 40) -> tuple[Path, Path]:
    """Clean images and the same images with bright streaks (a stand-in for rain), same file names."""
    gt, lq = root / "gt", root / "input"
    gt.mkdir(parents=True)
    lq.mkdir(parents=True)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        clean = np.stack([0.5 + 0.3 * np.sin(4 * xx + 3 * yy + i + c) for c in range(3)], axis=2)
        streaks = (rng.random((size, size)) < 0.03)[..., None] * 0.4
        write_image(gt / f"{i:03d}.png", Image(clean.astype(np.float32)))
        write_image(lq / f"{i:03d}.png", Image(np.clip(clean + streaks, 0, 1).astype(np.float32)))
    return gt, lq


def test_test_options_score_paired_sets(tmp_path, capsys):
    """`sr test -opt` with the test file (network shrunk, sets pointed at paired folders): each set scored on
    whole images, as `sr.evaluate` scores the model's own outputs."""
    from sr.evaluate import evaluate_set, find_pairs

    gt, lq = paired_folders(tmp_path / "data")
    tiny_model(tmp_path / "tiny.pth")
    options = yaml.safe_load(TEST_OPTIONS.read_text())
    options["network_g"].update(dim=6, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    options["path"]["pretrain_network_g"] = str(tmp_path / "tiny.pth")
    for dataset in options["datasets"].values():
        dataset.update(dataroot_gt=str(gt), dataroot_lq=str(lq))
    (tmp_path / "test.yml").write_text(yaml.safe_dump(options))
    assert main(["test", "-opt", str(tmp_path / "test.yml"), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    net = sr.load_model(tmp_path / "tiny.pth")
    want = evaluate_set(net, "Test1", find_pairs(gt, lq), crop_border=0, tile=0)
    for name in SETS:
        assert f"{name} x1  (Histoformer" in printed
    assert f"{want.psnr:8.4f} {want.ssim:7.4f}" in printed


def test_training_options_run_a_few_iterations_shrunk(tmp_path):
    """The training file, its network shrunk, on paired folders (training and one validation set), runs
    two iterations, validates, and saves weights that load back as a scale-1 Histoformer."""
    from sr.train import distributed
    from sr.train.trainer import Trainer

    gt, lq = paired_folders(tmp_path / "data")
    overrides = [
        f"path:experiments_root={tmp_path / 'run'}",
        f"datasets:train:dataroot_gt={gt}",
        f"datasets:train:dataroot_lq={lq}",
        "datasets:train:gt_size=32",
        "datasets:train:batch_size_per_gpu=2",
        "datasets:train:num_worker_per_gpu=0",
        "num_gpu=0",
        "network_g:dim=6",
        "network_g:num_blocks=[1, 1, 1, 1]",
        "network_g:num_refinement_blocks=1",
        "train:total_iter=2",
        "val:val_freq=2",
        "val:save_img=false",
        "logger:print_freq=1",
        "logger:save_checkpoint_freq=2",
        "logger:use_tb_logger=false",
    ]
    for key in ("val_snow_s", "val_snow_l", "val_test1", "val_raindrop"):
        overrides += [f"datasets:{key}:dataroot_gt={gt}", f"datasets:{key}:dataroot_lq={lq}"]
    trainer = Trainer(load_train_options(TRAIN_OPTIONS, overrides), TRAIN_OPTIONS)
    try:
        with redirect_stdout(io.StringIO()):
            trainer.run()
    finally:
        distributed.teardown(trainer.dist)
    saved = tmp_path / "run" / "models" / "net_g_2.safetensors"
    net = sr.load_model(saved)
    assert (net.family, net.scale, net.params["dim"], net.params["heads"]) == (
        "Histoformer",
        1,
        6,
        (1, 2, 4, 8),
    )
    assert set(read_state_dict(saved)) == set(net.model.state_dict())
