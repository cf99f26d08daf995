"""SRFormer: parity with spandrel_extra_arches' copy of the official network through our detecting loader,
presets and parameter counts, the official buffers (aligned index, permuted shift masks), detection,
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
from archs import MissingHyperParameter, srformer
from archs.srformer import SRFormer
from kernels import permuted_shift_window_mask
from sr.loading import ModelLoadError
from sr.options import load_test_options
from tests.helpers.attention import backends_agree, trace_attention
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

BASE = {"in_chans": 3, "mlp_ratio": 2.0, "qkv_bias": True, "patch_norm": True, "resi_connection": "1conv"}


def case(
    scale: int,
    window_size: int,
    embed_dim: int,
    depths: list,
    num_heads: list,
    upsampler: str,
    img_size: int,
    **extra,
) -> dict:
    """A full parameter dict, as `params_from_state_dict` should return it."""
    return dict(
        BASE,
        scale=scale,
        window_size=window_size,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        upsampler=upsampler,
        img_size=img_size,
        **extra,
    )


def random_cases(count: int) -> list[dict]:
    rng = random.Random(5)
    cases = []
    for _ in range(count):
        upsampler = rng.choice(["pixelshuffle", "pixelshuffledirect", "nearest+conv"])
        window, embed = rng.choice([4, 6, 8]), rng.choice([12, 24])
        heads = [rng.choice([h for h in (1, 2, 3, 4, 6) if embed % h == 0]) for _ in range(rng.randint(1, 2))]
        depths = [rng.randint(2, 3)] + [rng.randint(1, 3) for _ in heads[1:]]  # odd blocks store img_size
        scale = 4 if upsampler == "nearest+conv" else rng.choice([2, 3, 4])
        cases.append(
            case(
                scale,
                window,
                embed,
                depths,
                heads,
                upsampler,
                rng.choice([2, 3]) * window,
                mlp_ratio=rng.choice([1.0, 2.0, 4.0]),
                resi_connection=rng.choice(["1conv", "3conv"]),
            )
        )
    return cases


CASES = [
    case(2, 8, 16, [2], [2], "pixelshuffle", 16),
    case(3, 6, 12, [2, 2], [3, 2], "pixelshuffledirect", 24, mlp_ratio=1.5, resi_connection="3conv"),
    case(4, 4, 24, [3], [4], "nearest+conv", 12, mlp_ratio=4.0),
    # img_size ≤ window: the official blocks do not shift and store no attn_mask
    case(3, 10, 20, [2, 1], [5, 1], "pixelshuffle", 10, qkv_bias=False, patch_norm=False),
    case(4, 8, 16, [1], [4], "pixelshuffledirect", 64, in_chans=1),  # no odd block: img_size not stored
    case(2, 4, 16, [2, 2], [2, 4], "pixelshuffle", 20, mlp_ratio=2.5, resi_connection="3conv"),
    # scale 1 (no upsampler): the official denoising/JPEG branch
    case(1, 8, 16, [2], [2], "", 16),
    case(1, 4, 12, [2, 1], [3, 2], "", 12, in_chans=1, resi_connection="3conv"),
    *random_cases(2),
]


@pytest.fixture(scope="module")
def oracle():
    """spandrel_extra_arches' SRFormer class (the official code under CC BY-NC 4.0)."""
    install_torchvision_stub()
    pytest.importorskip("spandrel", reason="spandrel (--no-deps) is needed by the SRFormer oracle")
    module = pytest.importorskip(
        "spandrel_extra_arches.architectures.SRFormer",
        reason="spandrel_extra_arches (--no-deps) is the SRFormer oracle",
    )
    arch = importlib.import_module("spandrel_extra_arches.architectures.SRFormer.__arch.SRFormer")
    with pytest.MonkeyPatch.context() as patch:  # its truncated-normal init is slow here; we perturb anyway
        patch.setattr(arch, "trunc_normal_", lambda tensor, std=1.0, **_: nn.init.normal_(tensor, 0, std))
        yield module.SRFormer


def official(oracle, params: dict, seed: int = 0) -> nn.Module:
    """The official SRFormer with every learned parameter set at random, O(1) activations (buffers kept)."""
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in params.items() if k != "scale"}
    model = oracle(upscale=params["scale"], drop_path_rate=0.0, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn_like(p) * p[0].numel() ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


def image(seed: int, channels: int = 3, h: int = 19, w: int = 27, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, h, w, generator=torch.Generator().manual_seed(seed))


def save(tmp_path: Path, state_dict: dict, key: str = "params") -> Path:
    path = tmp_path / "weights.pth"  # no scale in the name: the loader must read it off the weights
    torch.save({key: state_dict}, path)
    return path


@pytest.mark.parametrize("params", CASES, ids=lambda p: f"{p['upsampler']}-x{p['scale']}-w{p['window_size']}")
def test_matches_official_through_the_loader(oracle, tmp_path, params):
    reference = official(oracle, params)
    state_dict = reference.state_dict()
    shifted = max(params["depths"]) > 1 and params["img_size"] > params["window_size"]
    assert any(k.endswith("attn_mask") for k in state_dict) == shifted
    loaded = sr.load_model(save(tmp_path, state_dict))
    assert loaded.family == "SRFormer" and loaded.params == params and loaded.scale == params["scale"]
    # a size unlike any window multiple, and the training size (where the official code uses its stored mask)
    for h, w in ((19, 27), (params["img_size"], params["img_size"])):
        x = image(1, params["in_chans"], h, w)
        with torch.no_grad():
            expected = reference(x.clone())
            got = loaded.model(x)
        scale = params["scale"]
        assert got.shape == expected.shape == (1, params["in_chans"], h * scale, w * scale)
        assert (got - expected).abs().max().item() <= 1e-5


def test_batches_match_official(oracle):
    params = CASES[0]
    reference = official(oracle, params, seed=1)
    ours = SRFormer(**params).eval()
    ours.load_state_dict(reference.state_dict())
    x = image(2, h=13, w=21, batch=3)
    with torch.no_grad():
        assert (ours(x) - reference(x.clone())).abs().max().item() <= 1e-5


@pytest.mark.parametrize("params", [CASES[1], CASES[3]], ids=["shifted", "unshifted"])
def test_state_dict_is_the_official_one(oracle, tmp_path, params):
    """Our weights carry the official keys, attn_mask included (at the training size), so they load
    strictly into the official code and round-trip through our loader with the same settings."""
    reference = official(oracle, params)
    ours = SRFormer(**params)
    ours_state = ours.state_dict()
    theirs = reference.state_dict()
    assert set(ours_state) == set(theirs)
    for key in ours_state:
        if key.endswith(("attn_mask", "aligned_relative_position_index")):
            assert torch.equal(ours_state[key], theirs[key]), key
    reference.load_state_dict(ours_state, strict=True)
    assert sr.load_model(save(tmp_path, ours_state)).params == params
    ours.load_state_dict(theirs, strict=True)  # the stored masks are dropped, not loaded


def official_aligned_index(window: int) -> torch.Tensor:
    """The official `aligned_relative_position_index`, transcribed: Swin's index on the half window,
    each query row repeated for the 2×2 tokens that share it."""
    half = window // 2
    coords = torch.stack(torch.meshgrid([torch.arange(half), torch.arange(half)], indexing="ij")).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += half - 1
    relative[:, :, 1] += half - 1
    relative[:, :, 0] *= 2 * half - 1
    index = relative.sum(-1).reshape(half, half, 1, 1, half * half).repeat(1, 1, 2, 2, 1)
    return index.permute(0, 2, 1, 3, 4).reshape(4 * half * half, half * half)


def official_labels(h: int, w: int, window: int, slices: tuple) -> torch.Tensor:
    img_mask = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in slices:
        for ws in slices:
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    windows = img_mask.view(1, h // window, window, w // window, window, 1).permute(0, 1, 3, 2, 4, 5)
    return windows.reshape(-1, window * window)


def official_mask(h: int, w: int, window: int) -> torch.Tensor:
    """The official `PSA_Block.calculate_mask` at HEAD (after fix bc85758), transcribed."""
    shift, half = window // 2, window // 2
    queries = official_labels(h, w, window, (slice(0, -window), slice(-window, -shift), slice(-shift, None)))
    keys = official_labels(
        h // 2, w // 2, half, (slice(0, -half), slice(-half, -shift // 2), slice(-shift // 2, None))
    )
    attn_mask = queries.unsqueeze(2) - keys.unsqueeze(1)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


@pytest.mark.parametrize("window", [4, 6, 10, 16, 22, 24])
def test_aligned_index_equals_the_official_buffer(window):
    index = (
        SRFormer(window_size=window, embed_dim=12, depths=[1], num_heads=[2])
        .layers[0]
        .residual_group.blocks[0]
        .attn.aligned_relative_position_index
    )
    assert index.shape == (window**2, (window // 2) ** 2) and index.max() == (window - 1) ** 2 - 1
    assert torch.equal(index, official_aligned_index(window))


@pytest.mark.parametrize(
    ("h", "w", "window"), [(44, 66, 22), (32, 48, 16), (48, 72, 24), (12, 18, 6), (20, 10, 10), (8, 8, 4)]
)
def test_permuted_mask_equals_the_official_one(h, w, window):
    mask = permuted_shift_window_mask(h, w, window, window // 2)
    assert mask.dtype == torch.float32 and torch.equal(mask, official_mask(h, w, window))
    assert permuted_shift_window_mask(h, w, window, window // 2) is mask  # cached per size
    assert torch.equal(
        permuted_shift_window_mask(h, w, window, window // 2, dtype=torch.bfloat16), mask.bfloat16()
    )


def test_presets_build_with_the_published_sizes(oracle):
    """Exact counts, equal to the official builds (light, classic x4); the published sizes (REFERENCE §3.6)
    are 10.52M (x4), light 873K (x4) and 853K (x2)."""
    counts = {
        ("SRFormer", 2): 10_376_783,
        ("SRFormer", 3): 10_561_423,
        ("SRFormer", 4): 10_524_495,
        ("SRFormer-light", 2): 853_272,
        ("SRFormer-light", 3): 861_387,
        ("SRFormer-light", 4): 872_748,
        ("SRFormer-real", 4): 10_543_503,
    }
    assert set(srformer.FAMILY.presets) == {name for name, _ in counts}
    for (name, scale), count in counts.items():
        preset = srformer.FAMILY.presets[name]
        with torch.device("meta"):
            ours = SRFormer(scale=scale, **preset)
        assert sum(p.numel() for p in ours.parameters()) == count, (name, scale)
        if name == "SRFormer-light" or (name, scale) == ("SRFormer", 4):  # img_size = window: no slow masks
            theirs = oracle(upscale=scale, **dict(preset, img_size=preset["window_size"]))
            assert sum(p.numel() for p in theirs.parameters()) == count, (name, scale)
    assert round(counts["SRFormer", 4] / 1e4) == 1052
    assert round(counts["SRFormer-light", 4] / 1e3) == 873 and round(counts["SRFormer-light", 2] / 1e3) == 853


def test_released_layout_is_detected_with_its_settings():
    """The official classic x4 keys and shapes (484×121 index, 441-row tables, (9, 484, 121) masks of
    img_size 64 rounded up to 66) give the SRFormer preset back."""
    with torch.device("meta"):
        state_dict = SRFormer(scale=4, **srformer.FAMILY.presets["SRFormer"]).state_dict()
    attn = "layers.0.residual_group.blocks.0.attn."
    assert state_dict[attn + "aligned_relative_position_index"].shape == (484, 121)
    assert state_dict[attn + "relative_position_bias_table"].shape == (441, 6)
    assert state_dict["layers.5.residual_group.blocks.5.attn_mask"].shape == (9, 484, 121)
    params = srformer.params_from_state_dict(state_dict, None)
    assert params == dict(BASE, scale=4, **dict(srformer.FAMILY.presets["SRFormer"], img_size=66))
    assert archs.detect_family(state_dict).name == "SRFormer"


def test_detection_is_ours_alone(oracle):
    ours = official(oracle, CASES[0]).state_dict()
    assert [family.name for family in archs.FAMILIES if family.detect(ours)] == ["SRFormer"]
    for name, state_dict in foreign_state_dicts("SRFormer").items():
        assert not srformer.detect(state_dict), name
    # SRFormerV2 interleaves Swin blocks (attn.qkv) with PSA blocks: not this network
    v2 = dict(ours, **{"layers.0.residual_group.blocks.1.attn.qkv.weight": torch.zeros(48, 16)})
    assert not srformer.detect(v2)


def test_weights_that_cannot_tell_a_setting_are_clear_errors(tmp_path):
    state_dict = SRFormer(**CASES[1]).state_dict()
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        srformer.params_from_state_dict(state_dict, 2)
    assert srformer.params_from_state_dict(state_dict, 3)["scale"] == 3

    headless = {k: v for k, v in state_dict.items() if not k.startswith("upsample.")}
    assert srformer.detect(headless)
    with pytest.raises(ModelLoadError, match="cannot tell the upsampler") as error:
        sr.load_model(save(tmp_path, headless))
    assert "\n" not in str(error.value)
    with pytest.raises(MissingHyperParameter, match="absolute position embedding"):
        srformer.params_from_state_dict(dict(state_dict, absolute_pos_embed=torch.zeros(1, 576, 12)), None)

    attn = "layers.0.residual_group.blocks.0.attn."
    for key, tensor in (
        (attn + "relative_position_bias_table", torch.zeros(50, 3)),
        (attn + "aligned_relative_position_index", torch.zeros(49, 9, dtype=torch.long)),
    ):
        with pytest.raises(MissingHyperParameter, match="window"):
            srformer.params_from_state_dict(dict(state_dict, **{key: tensor}), None)
    with pytest.raises(MissingHyperParameter, match="output channels"):
        srformer.params_from_state_dict(
            dict(state_dict, **{"upsample.0.weight": torch.zeros(26, 12, 3, 3)}), None
        )


def test_all_attention_goes_through_kernels(monkeypatch):
    params = CASES[5]
    torch.manual_seed(3)
    model = SRFormer(**params).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
    x = image(4, h=9, w=14)  # padded to 12×16: 12 windows of 16 queries and 4 merged keys
    calls, outputs = trace_attention(monkeypatch, kernels, model, x)
    assert len(calls) == sum(params["depths"])
    assert calls[0][:4] == ((12, 2, 16, 8), (12, 2, 4, 8), (2, 16, 4), None)
    assert calls[1].mask == (12, 16, 4) and calls[3][:3] == ((12, 4, 16, 4), (12, 4, 4, 4), (4, 16, 4))
    assert backends_agree(outputs)


def test_bfloat16_runs_with_masks_in_the_compute_dtype():
    model = SRFormer(**CASES[0]).eval()
    x = image(5, h=10, w=7)
    with torch.no_grad():
        expected = model(x)
        got = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16 and torch.isfinite(got).all()
    assert (got.float() - expected).abs().max().item() < 0.05


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/SRFormer").glob("*.yml"))
RELEASED = {
    **{f"SRFormer_DF2Ksrx{s}": ("SRFormer", s, f"SRFormer_SRx{s}_DF2K.pth", "params") for s in (2, 3, 4)},
    **{
        f"SRFormer_light_DIV2Ksrx{s}": ("SRFormer-light", s, f"SRFormerLight_SRx{s}_DIV2K.pth", "params")
        for s in (2, 3, 4)
    },
    "SRFormer-S_x4_real": ("SRFormer-real", 4, "SRFormer_S_RealSR.pth", "params_ema"),
}


def test_option_files_cover_the_released_models():
    assert sorted(path.name for path in OPTION_FILES) == sorted(f"test_{stem}.yml" for stem in RELEASED)


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    preset, scale, weights, param_key = RELEASED[path.stem.removeprefix("test_")]
    options = load_test_options(path)
    assert options.scale == scale and options.network_g.type == "SRFormer"
    network = yaml.safe_load(path.read_text())["network_g"]
    del network["type"]
    assert network == dict(srformer.FAMILY.presets[preset], scale=scale, in_chans=3, img_range=1.0)
    inspect.signature(SRFormer).bind(**network)
    assert options.path.pretrain_network_g == f"experiments/pretrained_models/SRFormer/{weights}"
    assert options.path.param_key_g == param_key
    assert {m.crop_border for m in options.val.metrics.values()} == {scale}


@pytest.mark.parametrize(
    "params",
    [case(4, 22, 24, [2], [2], "pixelshuffle", 48), case(4, 24, 24, [2], [4], "pixelshuffle", 48),
     case(2, 16, 180, [1], [6], "pixelshuffledirect", 64), case(1, 16, 24, [2], [2], "", 64)],
    ids=["img48-window22", "img48-window24", "light-embed180", "light-x1"],
)
def test_community_variants_match_official(oracle, tmp_path, params):
    """What community trainers make of SRFormer: img_size 48 with window 22 (e.g. 4x-Nomos8kSCSRFormer) or 24
    (traiNNer's and neosr's default), traiNNer's srformer_light with embed 180, 1x light models."""
    reference = official(oracle, params)
    loaded = sr.load_model(save(tmp_path, reference.state_dict(), key="params_ema"))
    # The masks are stored at img_size rounded up to the window (48 → 66 at window 22): all the weights can
    # tell, and all that matters (whether odd blocks shift).
    window = params["window_size"]
    assert loaded.params == dict(params, img_size=-(-params["img_size"] // window) * window)
    x = image(3, params["in_chans"], 23, 31)
    with torch.no_grad():
        assert (loaded.model(x) - reference(x.clone())).abs().max().item() <= 1e-5
