"""HAT: parity with spandrel's copy of the official code through our detecting loader, presets, index buffers,
detection, hyper-parameter errors, attention through kernels, option files."""

from __future__ import annotations

import inspect
import random
from pathlib import Path

import pytest
import torch

import archs
import sr
from archs import MissingHyperParameter, hat
from archs.hat import HAT
from sr.options import load_test_options
from tests.helpers.attention import backends_agree, trace_attention
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

# Parameter counts of our builds, equal to spandrel's builds of the same configs (checked once on CPU: a
# full-size spandrel build takes seconds, so the test compares a short group of each width with spandrel).
PARAMS = {("HAT", 2): 20_624_795, ("HAT", 3): 20_809_435, ("HAT", 4): 20_772_507,
          ("HAT-S", 2): 9_473_471, ("HAT-S", 3): 9_658_111, ("HAT-S", 4): 9_621_183,
          ("HAT-L", 2): 40_698_863, ("HAT-L", 3): 40_883_503, ("HAT-L", 4): 40_846_575}


@pytest.fixture(scope="module")
def spandrel():
    install_torchvision_stub()
    return pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the HAT oracle; CI installs it")


def official(spandrel, seed: int, **config) -> torch.nn.Module:
    """spandrel's HAT with every learned tensor perturbed: bias tables large enough that a wrong index
    shows, CAB weights large enough to show through its 0.01 scale, biases non-zero."""
    torch.manual_seed(seed)
    model = spandrel.architectures.HAT.HAT(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0, 0.5)
            elif "cab" in name:
                p.normal_(0, 0.2)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1, 0.1)
            else:
                p.add_(torch.randn_like(p), alpha=0.02)
    return model


def case(scale: int, window: int, overlap: float, embed: int, depths: tuple, heads: tuple, compress: int,
         squeeze: int, mlp: float, **extra) -> dict:
    """An official (spandrel) constructor config; `extra` holds resi_connection, num_feat, qkv_bias, ..."""
    return {"upscale": scale, "window_size": window, "overlap_ratio": overlap, "embed_dim": embed,
            "depths": depths, "num_heads": heads, "compress_ratio": compress, "squeeze_factor": squeeze,
            "mlp_ratio": mlp, **extra}


def random_cases(count: int) -> list[dict]:
    """Random small configs; the overlap margin ws·ratio must be even for the official unfold to tile."""
    rng = random.Random(4)
    cases = []
    for _ in range(count):
        window, overlap = rng.choice([(4, 0.5), (8, 0.25), (8, 0.5)])
        heads = rng.choice([(2,), (3,), (2, 3), (3, 3)])
        embed = rng.choice([12, 18, 24])
        depths = tuple(rng.randint(1, 2) for _ in heads)
        cases.append(case(rng.choice([2, 3, 4]), window, overlap, embed, depths, heads,
                          rng.choice([2, 3, 6]), rng.choice([3, 4, 6]), rng.choice([1.0, 1.5, 2.0]),
                          resi_connection=rng.choice(["1conv", "identity"]), num_feat=rng.choice([16, 32])))
    return cases


CASES = [
    case(2, 8, 0.5, 16, (2,), (2,), 4, 8, 2.0),
    case(3, 8, 0.25, 24, (2, 2), (4, 3), 3, 6, 1.5, resi_connection="identity", num_feat=32),
    case(4, 4, 0.5, 12, (1,), (3,), 2, 3, 2.0, qkv_bias=False, patch_norm=False, num_feat=16),
    *random_cases(2),
]


def expected_params(config: dict) -> dict:
    """What detection should infer for a spandrel config (spandrel's defaults for what it leaves out)."""
    embed = config["embed_dim"]
    return {"scale": config["upscale"], "in_chans": 3, "embed_dim": embed, "depths": config["depths"],
            "num_heads": config["num_heads"], "window_size": config["window_size"],
            "compress_ratio": embed // (embed // config["compress_ratio"]),
            "squeeze_factor": embed // (embed // config["squeeze_factor"]),
            "overlap_ratio": config["overlap_ratio"], "mlp_ratio": config["mlp_ratio"],
            "qkv_bias": config.get("qkv_bias", True), "ape": config.get("ape", False),
            "patch_norm": config.get("patch_norm", True),
            "resi_connection": config.get("resi_connection", "1conv"), "num_feat": config.get("num_feat", 64)}


def load_through_sr(tmp_path: Path, state_dict: dict) -> sr.LoadedModel:
    path = tmp_path / "hat_random.pth"
    torch.save({"params_ema": state_dict, "params": {}}, path)
    return sr.load_model(path)


@pytest.mark.parametrize("config", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_matches_spandrel_through_our_loader(spandrel, tmp_path, config):
    reference = official(spandrel, 1, **config)
    loaded = load_through_sr(tmp_path, reference.state_dict())
    assert loaded.family == "HAT" and loaded.scale == config["upscale"]
    assert loaded.params == expected_params(config)
    x = torch.rand(1, 3, 19, 27, generator=torch.Generator().manual_seed(2))  # not a window multiple
    with torch.no_grad():
        expected = reference(x)
        got = loaded.model(x)
    assert got.shape == (1, 3, 19 * config["upscale"], 27 * config["upscale"])
    assert (got - expected).abs().max().item() < 1e-5


def test_absolute_position_embedding(spandrel, tmp_path):
    """ape: the embedding is img_size² tokens, so inputs must pad to exactly img_size (13×11 → 16×16)."""
    config = case(2, 8, 0.5, 12, (2,), (2,), 3, 3, 2.0, ape=True, img_size=16)
    reference = official(spandrel, 3, **config)
    loaded = load_through_sr(tmp_path, reference.state_dict())
    assert loaded.params == dict(expected_params(config), img_size=16)
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert (loaded.model(x) - reference(x)).abs().max().item() < 1e-5


@pytest.mark.parametrize(("window", "overlap"), [(16, 0.5), (8, 0.25), (4, 0.5), (12, 0.5)])
def test_index_buffers_equal_the_official_ones(spandrel, window, overlap):
    ours = HAT(embed_dim=12, depths=(1,), num_heads=(2,), window_size=window, overlap_ratio=overlap,
               squeeze_factor=3).state_dict()
    theirs = spandrel.architectures.HAT.HAT(embed_dim=12, depths=(1,), num_heads=(2,), window_size=window,
                                            overlap_ratio=overlap, squeeze_factor=3).state_dict()
    for key in ("relative_position_index_SA", "relative_position_index_OCA"):
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key])
    assert ours["relative_position_index_OCA"].min() < 0  # negative entries wrap round the table, as upstream


def test_presets_build_with_the_published_sizes(spandrel):
    for (name, scale), count in PARAMS.items():
        with torch.device("meta"):
            model = HAT(scale=scale, **hat.FAMILY.presets[name])
        assert sum(p.numel() for p in model.parameters()) == count, (name, scale)
    assert abs(PARAMS["HAT", 4] / 1e6 - 20.8) < 0.05 and abs(PARAMS["HAT-S", 4] / 1e6 - 9.6) < 0.05  # README
    for name in ("HAT", "HAT-S"):  # a short group at full width: same keys and shapes as the official build
        config = dict(hat.FAMILY.presets[name], depths=(2,), num_heads=(6,))
        ours = HAT(scale=4, **config).state_dict()
        theirs = spandrel.architectures.HAT.HAT(upscale=4, **config).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_preset_weights_are_inferred_back():
    with torch.device("meta"):
        state_dict = HAT(scale=3, **hat.FAMILY.presets["HAT-S"]).state_dict()
    params = hat.params_from_state_dict(state_dict, None)
    preset = {k: v for k, v in hat.FAMILY.presets["HAT-S"].items() if k != "upsampler"}
    assert {k: params[k] for k in preset} == preset and params["scale"] == 3


def test_attention_runs_through_kernels(monkeypatch):
    model = HAT(scale=2, embed_dim=12, depths=(2, 1), num_heads=(2, 3), window_size=4, squeeze_factor=3)
    model.eval()
    calls, outputs = trace_attention(monkeypatch, hat, model, torch.rand(1, 3, 10, 13))
    # 3 HABs (the second shifted, with a mask) and 2 OCABs (16 queries, 36 overlapping keys)
    assert sorted((c.q[2], c.k[2], c.mask is not None) for c in calls) == sorted(
        [(16, 16, False), (16, 16, True), (16, 16, False), (16, 36, False), (16, 36, False)]
    )
    assert backends_agree(outputs)


def test_bfloat16_autocast_runs():
    torch.manual_seed(5)
    model = HAT(scale=2, embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, squeeze_factor=3).eval()
    x = torch.rand(1, 3, 9, 14)
    with torch.no_grad():
        full = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x).float()
    assert torch.isfinite(half).all() and (half - full).abs().max().item() < 0.1


def test_detection(spandrel):
    state_dict = official(spandrel, 0, **CASES[0]).state_dict()
    assert hat.detect(state_dict) and archs.detect_family(state_dict).name == "HAT"
    assert [family.name for family in archs.FAMILIES if family.detect(state_dict)] == ["HAT"]
    for name, foreign in foreign_state_dicts("HAT").items():
        assert not hat.detect(foreign), name


def small_state_dict(**config) -> dict:
    return HAT(**{"scale": 2, "embed_dim": 12, "depths": (2,), "num_heads": (2,), "window_size": 4,
                  "compress_ratio": 3, "squeeze_factor": 3, **config}).state_dict()


def test_what_the_weights_cannot_tell_is_a_clear_error():
    state_dict = small_state_dict(scale=3)
    assert hat.params_from_state_dict(state_dict, 3)["scale"] == 3
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        hat.params_from_state_dict(state_dict, 2)
    broken = dict(state_dict)
    broken["layers.0.residual_group.blocks.0.conv_block.cab.0.weight"] = torch.zeros(5, 12, 3, 3)
    with pytest.raises(MissingHyperParameter, match="compress_ratio: .* 12 channels to 5"):
        hat.params_from_state_dict(broken, None)
    broken = dict(state_dict)
    broken["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"] = torch.zeros(50, 2)
    with pytest.raises(MissingHyperParameter, match="window size: .* 50 rows"):
        hat.params_from_state_dict(broken, None)
    broken = dict(state_dict)
    broken["relative_position_index_OCA"] = torch.zeros(16, 16, dtype=torch.long)
    with pytest.raises(MissingHyperParameter, match="relative_position_index_OCA"):
        hat.params_from_state_dict(broken, None)


def test_overlap_ratio_is_exact():
    """ows − ws = 30 with ws = 44: 30/44·44 is 29.999…, so the inferred ratio is nudged up one ulp."""
    state_dict = small_state_dict()
    state_dict["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"] = torch.zeros(87**2, 2)
    state_dict["layers.0.residual_group.overlap_attn.relative_position_bias_table"] = torch.zeros(117**2, 2)
    for key in ("relative_position_index_SA", "relative_position_index_OCA"):
        del state_dict[key]
    ratio = hat.params_from_state_dict(state_dict, None)["overlap_ratio"]
    assert int(44 * (30 / 44)) == 29 and int(44 * ratio) == 30 and abs(ratio - 30 / 44) < 1e-15


def test_unusable_settings_are_refused():
    with pytest.raises(ValueError, match="even number"):  # the official unfold would not tile the map
        HAT(embed_dim=12, depths=(1,), num_heads=(2,), window_size=8, overlap_ratio=0.375)
    with pytest.raises(ValueError, match="pixelshuffle"):
        HAT(upsampler="pixelshuffledirect")


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/HAT").glob("*.yml"))


def test_option_files_cover_the_released_weights():
    stems = [f"HAT_SRx{s}" for s in (2, 3, 4)] + [f"HAT_SRx{s}_ImageNet-pretrain" for s in (2, 3, 4)]
    stems += [f"HAT-S_SRx{s}" for s in (2, 3, 4)] + [f"HAT-L_SRx{s}_ImageNet-pretrain" for s in (2, 3, 4)]
    stems += ["Real_HAT_GAN_SRx4", "Real_HAT_GAN_SRx4_sharper"]
    assert sorted(path.name for path in OPTION_FILES) == sorted(f"test_{stem}.yml" for stem in stems)


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    options = load_test_options(path)
    network = dict(options.network_g.args)
    stem = path.stem.removeprefix("test_")
    preset = hat.FAMILY.presets["HAT-S" if "HAT-S" in stem else "HAT-L" if "HAT-L" in stem else "HAT"]
    inspect.signature(HAT).bind(**network)
    network.update(depths=tuple(network["depths"]), num_heads=tuple(network["num_heads"]))
    assert network == dict(preset, scale=options.scale, in_chans=3, conv_scale=0.01, img_range=1.0)
    assert options.path.pretrain_network_g == f"experiments/pretrained_models/HAT/{stem}.pth"
    assert options.path.param_key_g == "params_ema" and options.network_g.type == "HAT"
    assert all(m.crop_border == options.scale and m.test_y_channel for m in options.val.metrics.values())


def test_community_embed_192_from_safetensors_with_both_copies(spandrel, tmp_path):
    """traiNNer-redux's hat_m_aligned / hat_l_aligned (embed 192) in a safetensors file holding `params` and
    `params_ema`, as trainers save them: the EMA copy is loaded, with the constructor's settings."""
    from safetensors.torch import save_file

    config = case(2, 16, 0.5, 192, (1,), (6,), 3, 30, 2.0, num_feat=32)
    ema, raw = official(spandrel, 3, **config), official(spandrel, 4, **config)
    tensors = {f"params_ema.{k}": v.contiguous() for k, v in ema.state_dict().items()}
    tensors |= {f"params.{k}": v.contiguous() for k, v in raw.state_dict().items()}
    save_file(tensors, str(tmp_path / "4x-community-HAT.safetensors"))
    loaded = sr.load_model(tmp_path / "4x-community-HAT.safetensors")
    assert loaded.params == expected_params(config) and loaded.params["embed_dim"] == 192
    x = torch.rand(1, 3, 21, 18, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (loaded.model(x) - ema(x)).abs().max().item() < 1e-5
