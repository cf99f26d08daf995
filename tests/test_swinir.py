"""SwinIR: parity with spandrel's copy of the official network through our detecting loader, presets and
parameter counts, the rebuilt buffers (index, shift masks), detection against the Swin-derived families,
attention routed through `kernels`, option files."""

from __future__ import annotations

import importlib
import inspect
import random
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import archs
import kernels
import sr
from archs import MissingHyperParameter, swinir
from archs.swinir import SwinIR
from sr.loading import ModelLoadError
from sr.options import load_test_options
from tests.helpers.attention import backends_agree, trace_attention
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

BASE = {"in_chans": 3, "img_range": 1.0, "qkv_bias": True, "patch_norm": True}


def case(scale: int, window_size: int, embed_dim: int, depths: tuple, num_heads: tuple, mlp_ratio: float,
         upsampler: str, resi_connection: str, **extra) -> dict:
    """A full parameter dict, as `params_from_state_dict` should return it."""
    return dict(BASE, scale=scale, window_size=window_size, embed_dim=embed_dim, depths=depths,
                num_heads=num_heads, mlp_ratio=mlp_ratio, upsampler=upsampler,
                resi_connection=resi_connection, **extra)


def random_cases(count: int) -> list[dict]:
    rng = random.Random(4)
    scales = {"pixelshuffle": [2, 3, 4], "pixelshuffledirect": [2, 3, 4], "nearest+conv": [2, 4]}
    cases = []
    for _ in range(count):
        heads = tuple(rng.choice([1, 2, 3, 6]) for _ in range(rng.randint(1, 2)))
        depths = tuple(rng.randint(1, 2) for _ in heads)
        upsampler = rng.choice(list(scales))
        cases.append(case(rng.choice(scales[upsampler]), rng.randint(3, 8), 12, depths, heads,
                          rng.choice([1.0, 2.0, 4.0]), upsampler, rng.choice(["1conv", "3conv"])))
    return cases


CASES = [
    case(2, 4, 12, (2,), (2,), 2.0, "pixelshuffle", "1conv"),
    case(3, 5, 18, (1, 2), (3, 6), 1.5, "pixelshuffle", "3conv"),
    case(8, 7, 12, (2, 2), (1, 3), 2.5, "pixelshuffle", "1conv"),
    case(4, 6, 24, (2, 1), (4, 2), 4.0, "pixelshuffledirect", "1conv"),
    case(3, 4, 16, (2,), (4,), 2.0, "pixelshuffledirect", "1conv", qkv_bias=False, patch_norm=False),
    case(4, 8, 16, (2,), (2,), 2.0, "nearest+conv", "3conv"),
    case(2, 4, 20, (3,), (5,), 1.0, "nearest+conv", "1conv"),
    case(2, 4, 12, (2,), (3,), 2.0, "pixelshuffledirect", "1conv", in_chans=1),
    # Scale 1 (no upsampler): denoising (window 8, img_range 1) and JPEG artifact removal (window 7, 255).
    case(1, 8, 12, (2,), (2,), 2.0, "", "1conv"),
    case(1, 8, 12, (2, 1), (3, 2), 2.0, "", "3conv", in_chans=1),
    case(1, 7, 14, (2,), (2,), 2.0, "", "1conv", img_range=255.0),
    case(1, 7, 14, (2,), (7,), 2.0, "", "1conv", in_chans=1, img_range=255.0),
    *random_cases(3),
]


@pytest.fixture(scope="module")
def spandrel():
    install_torchvision_stub()
    module = pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the SwinIR oracle; CI has it")
    arch = importlib.import_module("spandrel.architectures.SwinIR.__arch.SwinIR")
    with pytest.MonkeyPatch.context() as patch:  # its truncated-normal init is slow here; we perturb anyway
        patch.setattr(arch, "trunc_normal_", lambda tensor, std=1.0, **_: nn.init.normal_(tensor, 0, std))
        yield module


# Noise added to the learned parameters: strong in attention so that scores are far from uniform and the
# position bias, the shift masks and the scale all move the output well beyond the parity tolerance.
NOISE = {"relative_position_bias_table": 0.5, "attn.qkv.weight": 0.3, "attn.proj.weight": 0.2}


def official(spandrel, params: dict, img_size: int | None = None, seed: int = 0) -> torch.nn.Module:
    """spandrel's copy of the official SwinIR with every learned parameter perturbed (buffers untouched)."""
    torch.manual_seed(seed)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items() if k != "scale"}
    img_size = img_size or 2 * params["window_size"]  # above the window, as in every released model
    model = spandrel.architectures.SwinIR.SwinIR(upscale=params["scale"], img_size=img_size, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = next((std for part, std in NOISE.items() if name.endswith(part)), 0.02)
            p.add_(torch.randn_like(p) * std)
    return model.eval()


def image(seed: int, channels: int = 3, h: int = 19, w: int = 27, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def save(tmp_path: Path, state_dict: dict) -> Path:
    path = tmp_path / "weights.pth"  # no scale in the name: the loader must read it off the weights
    torch.save({"params": state_dict}, path)
    return path


@pytest.mark.parametrize("params", CASES, ids=lambda p: f"{p['upsampler']}-x{p['scale']}-w{p['window_size']}")
def test_matches_official_through_the_loader(spandrel, tmp_path, params):
    reference = official(spandrel, params)
    state_dict = reference.state_dict()
    shifted = max(params["depths"]) > 1
    assert any(k.endswith("attn_mask") for k in state_dict) == shifted
    assert any(k.endswith("attn.relative_position_index") for k in state_dict)
    loaded = sr.load_model(save(tmp_path, state_dict))
    assert loaded.family == "SwinIR" and loaded.params == params and loaded.scale == params["scale"]
    x = image(1, params["in_chans"])
    with torch.no_grad():
        expected = reference(x.clone())
        got = loaded.model(x)
    assert got.shape == (2, params["in_chans"], 19 * params["scale"], 27 * params["scale"])
    assert (got - expected).abs().max().item() <= 1e-5


def test_parity_weights_make_bias_mask_and_scale_matter(spandrel, tmp_path, monkeypatch):
    """Dropping the position bias or the shift mask, or a 10% wrong scale, moves the output of the parity
    models far beyond the 1e-5 tolerance, so the parity tests check each of them."""
    model = sr.load_model(save(tmp_path, official(spandrel, CASES[0]).state_dict())).model
    x = image(1)
    real = kernels.window_attention
    variants = {"no bias": lambda q, k, v, bias, mask: real(q, k, v, bias=None, mask=mask),
                "no mask": lambda q, k, v, bias, mask: real(q, k, v, bias=bias, mask=None),
                "scale": lambda q, k, v, bias, mask: real(q, k, v, bias=bias, mask=mask,
                                                          scale=0.9 * q.shape[-1] ** -0.5)}
    with torch.no_grad():
        expected = model(x)
        for name, attention in variants.items():
            monkeypatch.setattr(kernels, "window_attention", attention)
            assert (model(x) - expected).abs().max().item() > 1e-3, name


@pytest.mark.parametrize("img_size", [48, 64])
def test_training_patch_size_is_irrelevant(spandrel, tmp_path, img_size):
    """s48 and s64 checkpoints store (36|64, 64, 64) masks: both load strictly and match the official model,
    which uses its stored mask on inputs padded to img_size and a computed one on others."""
    params = case(2, 8, 12, (2,), (2,), 2.0, "pixelshuffle", "1conv")
    reference = official(spandrel, params, img_size=img_size)
    state_dict = reference.state_dict()
    assert state_dict["layers.0.residual_group.blocks.1.attn_mask"].shape == ((img_size // 8) ** 2, 64, 64)
    model = sr.load_model(save(tmp_path, state_dict)).model
    for h, w in ((img_size - 3, img_size - 5), (13, 21)):
        x = image(2, h=h, w=w, batch=1)
        with torch.no_grad():
            assert (model(x) - reference(x.clone())).abs().max().item() <= 1e-5


def _zoo_rows() -> list[tuple[str, dict]]:
    """(name, constructor arguments) of the official restoration files in ../shared/zoo's table."""
    import csv
    import json

    from tests.conftest import SHARED

    table = SHARED / "zoo" / "official_checkpoints.tsv"
    if not table.is_file():
        return []
    rows = csv.DictReader(table.open(encoding="utf-8"), delimiter="\t")
    return [(r["name"], json.loads(r["hyperparams"])) for r in rows
            if r["family"] == "SwinIR" and r["scale"] == "1" and r["name"].startswith("SwinIR-")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["grayDN", "colorDN", "grayJPEG", "colorJPEG"])
def test_official_restoration_files_are_detected_with_their_settings(spandrel, shared_dir, tmp_path, kind):
    """Full-size SwinIR-M built as main_test_swinir.py builds each released DN/CAR model (img_size 128/126,
    its 75 MB of masks saved too), saved as the release files are ({'params': ...}) under their names:
    detection gives the table's settings (img_range by the stated rule) and the output is the official one."""
    name, hp = next(row for row in _zoo_rows() if kind in row[0])
    args = {k: hp[k] for k in ("in_chans", "img_size", "window_size", "img_range", "depths", "embed_dim",
                                "num_heads", "mlp_ratio", "upsampler", "resi_connection")}
    torch.manual_seed(0)
    reference = spandrel.architectures.SwinIR.SwinIR(upscale=1, **args).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    entry = next(e for e in sr.zoo.ZOO.values() if e.name == name)
    path = tmp_path / entry.filename
    torch.save({"params": reference.state_dict()}, path)
    loaded = sr.load_model(path)
    expected = {"scale": 1, "in_chans": hp["in_chans"], "embed_dim": 180, "depths": (6,) * 6,
                "num_heads": (6,) * 6, "window_size": hp["window_size"], "mlp_ratio": 2.0, "upsampler": "",
                "resi_connection": "1conv", "img_range": hp["img_range"], "qkv_bias": True,
                "patch_norm": True}
    assert loaded.params == expected and loaded.in_channels == hp["in_chans"]
    assert swinir.params_from_state_dict(reference.state_dict()) == expected  # the rule alone, no zoo entry
    x = image(6, hp["in_chans"], h=17, w=23, batch=1)
    with torch.no_grad():
        assert (loaded.model(x) - reference(x.clone())).abs().max().item() <= 1e-5


def test_state_dict_is_the_official_one_without_rebuilt_buffers(spandrel):
    params = case(4, 4, 12, (2, 2), (2, 3), 2.0, "nearest+conv", "3conv")
    official_keys = set(official(spandrel, params).state_dict())
    ours = SwinIR(**params)
    assert set(ours.state_dict()) == {k for k in official_keys if not swinir.ignored_keys(k)}
    assert {k for k in official_keys if swinir.ignored_keys(k)} == {
        k for k in official_keys if k.endswith(("attn_mask", "attn.relative_position_index"))}


@pytest.mark.parametrize("window_size", [3, 4, 7, 8])
def test_rebuilt_buffers_equal_the_official_ones(spandrel, window_size):
    params = case(2, window_size, 12, (2,), (2,), 2.0, "pixelshuffledirect", "1conv")
    reference = official(spandrel, params)
    plain, shifted = reference.layers[0].residual_group.blocks
    ours = SwinIR(**params).layers[0].residual_group.blocks
    assert torch.equal(ours[0].attn.relative_position_index, plain.attn.relative_position_index)
    assert ours[1].shift_size == shifted.shift_size == window_size // 2
    for h, w in ((1, 1), (2, 3), (4, 1)):
        h, w = h * window_size, w * window_size
        mask = kernels.shift_window_mask(h, w, window_size, window_size // 2)
        assert torch.equal(mask, shifted.calculate_mask((h, w)))


def test_presets_build_with_the_published_sizes(spandrel, monkeypatch):
    """Exact counts, equal to spandrel's builds; the papers' 878K/897K (light x2/x4) leave out the
    relative-position tables (4 × 6 blocks × 225 × 6 = 32,400), 930K (later papers) and 11.9M count them."""
    counts = {("swinir-classic", 2): 11_752_487, ("swinir-classic", 3): 11_937_127,
              ("swinir-classic", 4): 11_900_199, ("swinir-classic", 8): 12_047_911,
              ("swinir-light", 2): 910_152, ("swinir-light", 3): 918_267, ("swinir-light", 4): 929_628,
              ("swinir-real-M", 2): 11_678_631, ("swinir-real-M", 4): 11_715_559,
              ("swinir-real-L", 4): 28_013_059, ("swinir-dn", 1): 11_504_163, ("swinir-car", 1): 11_492_067}
    arch = importlib.import_module("spandrel.architectures.SwinIR.__arch.SwinIR")
    for layer in (nn.Linear, nn.Conv2d):  # counting only: skip the default initialisation of big layers
        monkeypatch.setattr(layer, "reset_parameters", lambda self: None)
    assert set(swinir.FAMILY.presets) == {name for name, _ in counts}
    for (name, scale), count in counts.items():
        preset = swinir.FAMILY.presets[name]
        with torch.device("meta"):
            ours = SwinIR(scale=scale, **preset)
        assert sum(p.numel() for p in ours.parameters()) == count, (name, scale)
        if scale in (1, 4) or name == "swinir-light":
            kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()}
            theirs = arch.SwinIR(upscale=scale, img_size=2 * preset["window_size"], **kwargs)  # buffers only
            assert sum(p.numel() for p in theirs.parameters()) == count, (name, scale)
    tables = 4 * 6 * 225 * 6
    assert round((counts["swinir-light", 2] - tables) / 1000) == 878
    assert round((counts["swinir-light", 4] - tables) / 1000) == 897
    assert round(counts["swinir-light", 4] / 1000) == 930 and round(counts["swinir-classic", 4] / 1e5) == 119


def test_detection_rejects_other_families():
    for params in CASES[:8]:  # every upsampler and residual connection, grayscale, no qkv bias or patch norm
        ours = SwinIR(**params).state_dict()
        assert [family.name for family in archs.FAMILIES if family.detect(ours)] == ["SwinIR"]
    others = foreign_state_dicts("SwinIR")
    for name, state_dict in others.items():
        assert not swinir.detect(state_dict), name
    assert all(key in others["HAT (official)"] for key in swinir._KEYS)  # only its own keys tell HAT apart


def test_weights_that_cannot_tell_a_setting_are_clear_errors(tmp_path):
    state_dict = SwinIR(**case(3, 4, 12, (2,), (2,), 2.0, "pixelshuffle", "1conv")).state_dict()
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        swinir.params_from_state_dict(state_dict, 2)
    assert swinir.params_from_state_dict(state_dict, 3)["scale"] == 3

    # Without its upsampler, the conv_last left over reads 64 features, not the 12 of the body: no scale-1
    # model either.
    upsampler = ("upsample.", "conv_before_upsample.")
    headless = {k: v for k, v in state_dict.items() if not k.startswith(upsampler)}
    assert swinir.detect(headless)
    with pytest.raises(MissingHyperParameter, match="cannot tell the upsampler"):
        swinir.params_from_state_dict(headless)
    with pytest.raises(ModelLoadError, match="cannot tell the upsampler") as error:
        sr.load_model(save(tmp_path, headless))
    assert "\n" not in str(error.value)
    restorer = SwinIR(**case(1, 4, 12, (2,), (2,), 2.0, "", "1conv")).state_dict()
    with pytest.raises(MissingHyperParameter, match="x1, not x2"):
        swinir.params_from_state_dict(restorer, 2)

    table = "layers.0.residual_group.blocks.0.attn.relative_position_bias_table"
    with pytest.raises(MissingHyperParameter, match="window size"):
        swinir.params_from_state_dict(dict(state_dict, **{table: torch.zeros(50, 2)}))
    index = "layers.0.residual_group.blocks.0.attn.relative_position_index"
    with pytest.raises(MissingHyperParameter, match="window size"):
        swinir.params_from_state_dict(dict(state_dict, **{index: torch.zeros(25, 25, dtype=torch.long)}))

    direct = SwinIR(**case(2, 4, 12, (2,), (2,), 2.0, "pixelshuffledirect", "1conv")).state_dict()
    with pytest.raises(MissingHyperParameter, match="conv_first takes 3 channels and upsample.0 gives 13"):
        swinir.params_from_state_dict(dict(direct, **{"upsample.0.weight": torch.zeros(13, 12, 3, 3)}))
    without_body_conv = {k: v for k, v in direct.items() if not k.startswith("conv_after_body.")}
    with pytest.raises(MissingHyperParameter, match="resi_connection"):
        swinir.params_from_state_dict(without_body_conv)


def test_all_attention_goes_through_kernels(monkeypatch):
    params = case(2, 4, 12, (2, 3), (2, 3), 2.0, "pixelshuffle", "1conv")
    torch.manual_seed(3)
    model = SwinIR(**params).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    x = image(4, h=9, w=14, batch=1)  # padded to 12×16: 12 windows of 16 tokens
    calls, outputs = trace_attention(monkeypatch, kernels, model, x)
    assert len(calls) == sum(params["depths"])
    assert [c.mask_dtype for c in calls] == [None, torch.float32, None, torch.float32, None]
    assert (calls[0].q, calls[0].bias) == ((12, 2, 16, 6), (2, 16, 16))
    assert backends_agree(outputs)


def test_bfloat16_runs_with_masks_in_the_compute_dtype():
    model = SwinIR(**case(2, 4, 12, (2,), (2,), 2.0, "pixelshuffledirect", "1conv")).eval()
    x = image(5, h=10, w=7, batch=1)
    with torch.no_grad():
        expected = model(x)
        got = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert (got.float() - expected).abs().max().item() < 0.05


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/SwinIR").glob("*.yml"))
RELEASED = {
    **{f"001_classicalSR_{data}_s{size}w8_SwinIR-M_x{s}": ("swinir-classic", s, "params")
       for data, size in (("DIV2K", 48), ("DF2K", 64)) for s in (2, 3, 4, 8)},
    **{f"002_lightweightSR_DIV2K_s64w8_SwinIR-S_x{s}": ("swinir-light", s, "params") for s in (2, 3, 4)},
    **{f"003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x{s}_GAN": ("swinir-real-M", s, "params_ema") for s in (2, 4)},
    "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN": ("swinir-real-L", 4, "params_ema"),
    **{f"00{4 + c}_{'color' if c else 'gray'}DN_DFWB_s128w8_SwinIR-M_noise{sigma}": ("swinir-dn", 1, "params")
       for c in (0, 1) for sigma in (15, 25, 50)},
    **{f"006_{kind}CAR_DFWB_s126w7_SwinIR-M_jpeg{q}": ("swinir-car", 1, "params")
       for kind in ("", "color") for q in (10, 20, 30, 40)},
}


def test_option_files_cover_the_released_models():
    assert sorted(path.name for path in OPTION_FILES) == sorted(f"test_{stem}.yml" for stem in RELEASED)


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    stem = path.stem.removeprefix("test_")
    preset, scale, param_key = RELEASED[stem]
    options = load_test_options(path)
    assert options.name == stem and options.scale == scale and options.network_g.type == "SwinIR"
    network = yaml.safe_load(path.read_text())["network_g"]
    del network["type"]
    gray = "grayDN" in stem or "_CAR_" in stem
    preset_settings = swinir.FAMILY.presets[preset]
    expected = {"img_range": 1.0, **preset_settings, "scale": scale, "in_chans": 1 if gray else 3}
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in network.items()} == expected
    inspect.signature(SwinIR).bind(**network)
    assert options.path.pretrain_network_g == f"experiments/pretrained_models/SwinIR/{stem}.pth"
    assert options.path.param_key_g == param_key
    assert {m.crop_border for m in options.val.metrics.values()} == {scale if scale > 1 else 0}


@pytest.mark.parametrize(
    ("upsampler", "upscale", "unshuffle", "old_keys"),
    [("pixelshuffle", 4, 2, False), ("pixelshuffle", 2, 2, True), ("pixelshuffledirect", 4, 4, False),
     ("nearest+conv", 4, 2, False)],
)
def test_unshuffle_front_end_matches_spandrel(spandrel, tmp_path, upsampler, upscale, unshuffle, old_keys):
    """traiNNer-redux's and neosr's SwinIR with a PixelUnshuffle before conv_first (spandrel's
    `start_unshuffle`; older files keep that conv as `conv_first.1`): x1 and x2 models on an x2/x4 body."""
    params = case(upscale // unshuffle, 4, 12, (2,), (2,), 2.0, upsampler, "1conv", start_unshuffle=unshuffle)
    torch.manual_seed(3)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items() if k != "scale"}
    reference = spandrel.architectures.SwinIR.SwinIR(upscale=upscale, img_size=16, **kwargs).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            p.add_(torch.randn_like(p) * NOISE.get(name.rsplit(".", 1)[-1], 0.02))
    state_dict = reference.state_dict()
    if old_keys:
        state_dict = {k.replace("conv_first.", "conv_first.1.", 1): v for k, v in state_dict.items()}
    loaded = sr.load_model(save(tmp_path, state_dict))
    assert loaded.params == params and loaded.scale == upscale // unshuffle
    side = 4 * unshuffle  # spandrel pads to the window before unshuffling: it is right on multiples of both
    x = image(4, h=2 * side, w=3 * side, batch=1)
    with torch.no_grad():
        got, expected = loaded.model(x), reference(x.clone())
    assert got.shape == expected.shape == (1, 3, 2 * side * loaded.scale, 3 * side * loaded.scale)
    assert (got - expected).abs().max().item() <= 1e-5
    assert loaded.model(image(5, h=13, w=22, batch=1)).shape == (1, 3, 13 * loaded.scale, 22 * loaded.scale)


def test_community_small_with_a_pixelshuffle_head(spandrel, tmp_path):
    """SwinIR-S bodies trained with the classical pixelshuffle head and img_size 32 (e.g. OpenModelDB's
    2x-Bubble-AnimeScale-SwinIR-Small): the upsampler and sizes come from the keys."""
    params = case(2, 8, 60, (6, 6, 6, 6), (6, 6, 6, 6), 2.0, "pixelshuffle", "1conv")
    reference = official(spandrel, params, img_size=32)
    assert reference.state_dict()["layers.0.residual_group.blocks.1.attn_mask"].shape == (16, 64, 64)
    loaded = sr.load_model(save(tmp_path, reference.state_dict()))
    assert loaded.params == params
    x = image(6, h=21, w=17, batch=1)
    with torch.no_grad():
        assert (loaded.model(x) - reference(x.clone())).abs().max().item() <= 1e-5
