"""CAMixerSR: a float64 transcription of the official forward, routing, detection, presets, option files and
the official CAMixerSR-S checkpoint's numbers on the benchmark files (REFERENCE §3.8, §7)."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch

import archs
import sr
from archs import MissingHyperParameter, camixer
from archs.camixer import CAMixerSR
from sr.evaluate import dataset_dirs, evaluate_set, find_pairs
from sr.options import load_test_options
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles import camixer_reference as reference

CASES = [
    {"n_block": [1, 2], "n_group": 2, "n_colors": 3, "n_feats": 12, "scale": 2},
    {"n_block": [2], "n_group": 1, "n_colors": 3, "n_feats": 20, "scale": 3},
    {"n_block": [1, 1, 1], "n_group": 3, "n_colors": 3, "n_feats": 16, "scale": 4},
    {"n_block": [1], "n_group": 1, "n_colors": 1, "n_feats": 8, "scale": 4},
    # x1: the official tail is a conv to n_colors·1² channels and PixelShuffle(1), a plain last conv
    {"n_block": [1, 1], "n_group": 2, "n_colors": 3, "n_feats": 12, "scale": 1},
]
PARITY = list(zip(CASES, [(19, 27), (33, 20), (17, 40), (21, 18), (23, 26)], strict=True))
OPTIONS = Path(__file__).resolve().parents[1] / "options" / "test" / "CAMixerSR"
# REFERENCE §7: the official code and weights at ratio 1.0 on these exact files (PSNR-Y, SSIM-Y).
ANCHORS = {"Set5": (32.3298, 0.8969), "Set14": (28.7021, 0.7839), "B100": (27.6221, 0.7386),
           "Urban100": (26.3190, 0.7931)}


def random_weights(seed: int, **config) -> dict[str, torch.Tensor]:
    """Weights of a seeded model with every parameter perturbed (LayerNorm and biases included)."""
    torch.manual_seed(seed)
    model = CAMixerSR(**config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.state_dict()


def image(seed: int, h: int, w: int, channels: int = 3, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def built(state_dict: dict, **options) -> CAMixerSR:
    params = camixer.params_from_state_dict(state_dict, None)
    model = CAMixerSR(**params, **options)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1 / (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item())


@pytest.mark.parametrize(("config", "size"), PARITY, ids=[f"nf{c['n_feats']}-x{c['scale']}-{h}x{w}"
                                                         for c, (h, w) in PARITY])
def test_loader_matches_official_transcription(tmp_path, config, size):
    """Detected, inferred, loaded from `params_ema` (not `params`) and equal to the official forward."""
    state_dict = random_weights(1, **config)
    path = tmp_path / "net.pth"
    torch.save({"params": random_weights(2, **config), "params_ema": state_dict}, path)
    net = sr.load_model(path)
    assert net.family == "CAMixerSR" and net.params == config and net.multiple_of == 16
    x = image(3, *size, channels=config["n_colors"])
    with torch.no_grad():
        got = net.model(x)
    assert got.shape == (1, config["n_colors"], size[0] * config["scale"], size[1] * config["scale"])
    assert (got.double() - reference.camixersr(state_dict, x)).abs().max().item() < 1e-5


def test_float64_equals_transcription_on_a_batch():
    state_dict = random_weights(4, **CASES[0])
    x = image(5, 35, 24, batch=2)
    with torch.no_grad():
        got = built(state_dict).double()(x.double())
    assert (got - reference.camixersr(state_dict, x)).abs().max().item() < 1e-12


def attended_windows(model: CAMixerSR, x: torch.Tensor, monkeypatch) -> list[int]:
    """How many windows each block's attention runs on."""
    counts = []
    real = camixer.window_attention

    def counting(q, k, v, **kwargs):
        counts.append(q.shape[0])
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(camixer, "window_attention", counting)
    with torch.no_grad():
        model(x)
    monkeypatch.setattr(camixer, "window_attention", real)
    return counts


@pytest.mark.parametrize("ratio", [0.5, 0.25])
def test_stochastic_routing_is_the_official_draw(monkeypatch, ratio):
    """Same seed, shapes and dtype: the same Gumbel draws, window counts and output as the official code."""
    state_dict = random_weights(6, **CASES[0])
    model = built(state_dict, ratio=ratio, stochastic=True).double()
    x = image(7, 40, 50, batch=2).double()  # 3x4 windows per image
    torch.manual_seed(8)
    expected = reference.camixersr(state_dict, x, ratio=ratio)
    torch.manual_seed(8)
    with torch.no_grad():
        got = model(x)
    assert (got - expected).abs().max().item() < 1e-10
    torch.manual_seed(8)
    counts = attended_windows(model, x, monkeypatch)
    assert len(counts) == 3 and all(0 <= n < 24 and n % 2 == 0 for n in counts)


def expected_count(ratio: float):
    """A stand-in for the official draw that makes the official code keep round(N·E[r]·2·ratio) windows."""

    def draw(pred_score: torch.Tensor) -> torch.Tensor:
        windows = pred_score.shape[1]
        share = torch.sigmoid(pred_score[..., 0] - pred_score[..., 1]).mean()
        keep = round(float(windows * share * 2 * ratio))
        return torch.full_like(pred_score[..., :1], (keep + 0.5) / (windows * 2 * ratio))

    return draw


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_deterministic_routing_keeps_the_expected_window_count(monkeypatch, ratio):
    state_dict = random_weights(9, **CASES[2])
    model = built(state_dict, ratio=ratio).double()
    x = image(10, 45, 60, batch=2).double()
    rng = torch.get_rng_state()
    with torch.no_grad():
        got, again = model(x), model(x)
    assert torch.equal(rng, torch.get_rng_state())  # draws nothing
    assert torch.equal(got, again)
    assert (got - reference.camixersr(state_dict, x, ratio, expected_count(ratio))).abs().max() < 1e-10
    assert 0 < sum(attended_windows(model, x, monkeypatch)) < 3 * 2 * 12


def test_ratio_one_attends_every_window_and_draws_nothing(monkeypatch):
    state_dict = random_weights(11, **CASES[0])
    x = image(12, 40, 50)
    plain, stochastic = built(state_dict), built(state_dict, stochastic=True)
    rng = torch.get_rng_state()
    with torch.no_grad():
        assert torch.equal(plain(x), stochastic(x))
    assert torch.equal(rng, torch.get_rng_state())
    assert attended_windows(plain, x, monkeypatch) == [12] * 3


def test_attention_goes_through_kernels_with_scale_one(monkeypatch):
    state_dict = random_weights(13, **CASES[2])
    model = built(state_dict)
    x = image(14, 19, 27, batch=2)
    calls = []
    real = camixer.window_attention

    def recording(q, k, v, **kwargs):
        calls.append((tuple(q.shape), kwargs))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(camixer, "window_attention", recording)
    with torch.no_grad():
        model(x)
    assert calls == [((2 * 2 * 2, 1, 256, 16), {"scale": 1.0})] * 3
    monkeypatch.setattr(camixer, "window_attention", real)
    outputs = []
    for backend in ("reference", "sdpa"):
        monkeypatch.setenv("SR_ATTENTION_BACKEND", backend)
        with torch.no_grad():
            outputs.append(model(x))
    assert (outputs[0] - outputs[1]).abs().max().item() < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_exported_warp_is_grid_sample(dtype):
    """Exports warp by four gathers (ONNX Runtime's GridSample was a fifth of the network's time): the same
    bilinear, border-padded, corner-aligned sampling as F.grid_sample, offsets beyond the image included."""
    torch.manual_seed(3)
    x = torch.rand(2, 5, 19, 23).to(dtype)
    flow = 6 * torch.randn(2, 2, 19, 23)  # many samples land outside: the border clamp matters
    want = camixer.flow_warp(x, flow).float()
    tolerance = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: both round the float result once
    assert (camixer._gathered_warp(x, flow).float() - want).abs().max().item() <= tolerance


def test_export_graph_uses_gathers_and_layer_normalization(tmp_path):
    """The exported graph has no GridSample and no channel ReduceMean (LayerNorm becomes one
    LayerNormalization), and ONNX Runtime gives PyTorch's output."""
    import onnx

    from sr.loading import LoadedModel
    from sr.onnx.export import export

    model = built(random_weights(5, n_feats=16, n_block=[1, 1], n_group=2, scale=2))
    net = LoadedModel(model, "CAMixerSR", 2, {}, camixer.FAMILY.multiple_of, False, True, "tiny")
    report = export(net, tmp_path / "c.onnx")
    assert all(check.max_abs_diff <= 1e-4 for check in report.checks), report.lines()
    ops = {node.op_type for node in onnx.load(str(tmp_path / "c.onnx")).graph.node}
    assert "GridSample" not in ops and "ReduceMean" not in ops
    assert {"GatherElements", "LayerNormalization"} <= ops


def test_detection_is_exclusive():
    state_dict = random_weights(15, **CASES[1])
    assert archs.detect_family(state_dict) is camixer.FAMILY
    assert [f.name for f in archs.FAMILIES if f.detect(state_dict)] == ["CAMixerSR"]
    for name, other in foreign_state_dicts("CAMixerSR").items():
        assert not camixer.detect(other), name


def test_scale_that_the_weights_cannot_hold_is_an_error():
    state_dict = random_weights(16, **CASES[0])
    with pytest.raises(MissingHyperParameter, match="x2, not x4"):
        camixer.params_from_state_dict(state_dict, 4)
    state_dict["tail.0.weight"] = state_dict["tail.0.weight"][:10]
    with pytest.raises(MissingHyperParameter, match="10 output channels"):
        camixer.params_from_state_dict(state_dict, None)


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="ratio"):
        CAMixerSR(ratio=0)
    with pytest.raises(ValueError, match="n_group"):
        CAMixerSR(n_block=[1, 1], n_group=3)


def test_small_inputs_are_padded_like_the_official_model():
    x = image(17, 19, 27)
    assert torch.equal(camixer.pad_to_window(x, 16), torch.nn.functional.pad(x, (0, 5, 0, 13), "reflect"))
    tiny = image(18, 5, 7)  # too small to reflect 11 and 9 pixels: the official pad raises here
    assert torch.equal(camixer.pad_to_window(tiny, 16)[..., 5:, :7], tiny[..., 4:5, :].expand(1, 3, 11, 7))
    with torch.no_grad():
        assert built(random_weights(19, **CASES[0]))(tiny).shape == (1, 3, 10, 14)


# Parameter counts of our builds; the paper gives 351K / 535K / 765K (S / M / B and light x4).
PRESET_PARAMS = {("CAMixerSR-S", 4): 351_238, ("CAMixerSR-M", 4): 534_558, ("CAMixerSR-B", 4): 765_322,
                 ("CAMixerSR-light", 4): 765_322, ("CAMixerSR-light", 2): 745_846}


@pytest.mark.parametrize(("preset", "scale"), sorted(PRESET_PARAMS))
def test_preset_parameter_counts(preset, scale):
    model = CAMixerSR(**camixer.FAMILY.presets[preset], scale=scale)
    count = sum(p.numel() for p in model.parameters())
    assert count == PRESET_PARAMS[preset, scale]
    paper = {"CAMixerSR-S": 351_000, "CAMixerSR-M": 535_000}.get(preset, 765_000)
    assert scale != 4 or round(count, -3) == paper


def settings(kwargs: dict) -> dict:
    """The full constructor settings that `kwargs` give CAMixerSR."""
    bound = inspect.signature(CAMixerSR).bind(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments, n_block=list(bound.arguments["n_block"]))


def test_option_files_build_their_presets():
    files = sorted(OPTIONS.glob("*.yml"))
    assert [f.name for f in files] == [f"test_CAMixerSR_{v}.yml" for v in
                                       ("B_x4", "M_x4", "S_x4", "x2", "x2_DF", "x3", "x4", "x4_DF")]
    for file in files:
        opt = load_test_options(file)
        assert opt.network_g.type == "CAMixerSR" and opt.path.param_key_g == "params_ema"
        assert opt.network_g.args["ratio"] == 0.5 and opt.network_g.args["scale"] == opt.scale
        variant = file.stem.removeprefix("test_CAMixerSR_")  # S_x4 ... or x2, x2_DF ...
        large = variant.endswith("_x4") and variant[0] in "SMB"
        preset = camixer.FAMILY.presets[f"CAMixerSR-{variant[0]}" if large else "CAMixerSR-light"]
        assert settings(opt.network_g.args) == settings(dict(preset, scale=opt.scale, ratio=0.5))
        official = f"CAMixerSR_{variant[0]}.pth" if large else f"CAMixerSR{variant}.pth"
        assert Path(opt.path.pretrain_network_g).name == official


@pytest.fixture(scope="module")
def camixer_s(shared_dir):
    """The official CAMixerSR-S x4, loaded once per module (from `params_ema`)."""
    return sr.load_model(shared_dir / "weights" / "CAMixerSR" / "CAMixerSR_S.pth")


def test_official_checkpoint_params_and_forward(camixer_s, shared_dir, real_lr):
    assert camixer_s.params == dict(camixer.FAMILY.presets["CAMixerSR-S"], n_block=[4, 4, 6, 6], n_colors=3,
                                    scale=4)
    assert sum(p.numel() for p in camixer_s.model.parameters()) == 351_238
    state_dict = torch.load(shared_dir / "weights" / "CAMixerSR" / "CAMixerSR_S.pth", weights_only=True)
    crop = real_lr[..., :40, :52]
    with torch.no_grad():
        got = camixer_s.model(crop)
        bf16 = built(state_dict["params_ema"]).to(torch.bfloat16)(crop.bfloat16()).float()
    assert (got.double() - reference.camixersr(state_dict["params_ema"], crop)).abs().max().item() < 1e-5
    assert psnr(bf16, got) > 45  # supports_bf16


def test_routing_below_ratio_one_changes_a_real_image_slightly(camixer_s, real_lr):
    """Seeded stochastic routing is reproducible; ratio 0.5 stays close to ratio 1.0 on real content."""
    x = real_lr[..., :64, :96]
    state_dict = camixer_s.model.state_dict()
    stochastic, fixed = built(state_dict, ratio=0.5, stochastic=True), built(state_dict, ratio=0.5)
    with torch.no_grad():
        full = camixer_s.model(x)
        torch.manual_seed(0)
        first = stochastic(x)
        torch.manual_seed(0)
        second = stochastic(x)
        deterministic = fixed(x)
    assert torch.equal(first, second)
    for routed in (first, deterministic):
        assert not torch.equal(routed, full)
        assert 40 < psnr(routed, full) < 80


@pytest.fixture(scope="module")
def benchmarks(shared_dir):
    return shared_dir / "data" / "benchmarks"


def check_anchor(net, benchmarks: Path, name: str) -> None:
    result = evaluate_set(net, name, find_pairs(*dataset_dirs(name, 4, benchmarks)))
    want_psnr, want_ssim = ANCHORS[name]
    assert result.psnr == pytest.approx(want_psnr, abs=0.005)
    assert result.ssim == pytest.approx(want_ssim, abs=0.001)


def test_official_s_reproduces_set5(camixer_s, benchmarks):
    check_anchor(camixer_s, benchmarks, "Set5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Set14", "B100", "Urban100"])
def test_official_s_reproduces_anchor(camixer_s, benchmarks, name):
    check_anchor(camixer_s, benchmarks, name)
