"""RCAN: parity with spandrel and a float64 transcription, BasicSR key remapping, detection, inference."""

from __future__ import annotations

import inspect
import random
from pathlib import Path

import pytest
import torch
import yaml

import archs
from archs import MissingHyperParameter, rcan
from archs.blocks import ChannelAttention, PooledChannelAttention
from archs.han import HAN
from archs.pan import PAN
from archs.rcan import RCAN
from tests.helpers.detect import load
from tests.oracles import reference
from tests.oracles.torchvision_stub import install as install_torchvision_stub

SMALL = {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4}


def random_rcan(seed: int, **config) -> dict[str, torch.Tensor]:
    """Weights of a seeded RCAN whose mean shifts are perturbed too, so loading must carry them."""
    torch.manual_seed(seed)
    model = RCAN(**config)
    with torch.no_grad():
        for name in ("sub_mean", "add_mean"):
            getattr(model, name).weight.add_(0.01 * torch.randn(3, 3, 1, 1))
            getattr(model, name).bias.add_(torch.randn(3))
    return model.state_dict()


def image(seed: int, h: int = 12, w: int = 10) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def random_configs(count: int) -> list[dict]:
    rng = random.Random(5)
    return [{"n_resgroups": rng.randint(1, 3), "n_resblocks": rng.randint(1, 3),
             "n_feats": rng.choice([8, 12, 24, 32]), "reduction": rng.choice([2, 3, 4, 8]),
             "scale": rng.choice([2, 3, 4, 8])} for _ in range(count)]


# x1: the official Upsampler has log2(1) = 0 steps, so tail.0 is empty (spandrel reads 64 features then).
CASES = [dict(SMALL, scale=s) for s in (2, 3, 4)] + random_configs(2) + [
    {"n_resgroups": 1, "n_resblocks": 2, "n_feats": 64, "reduction": 16, "scale": 1}
]


@pytest.fixture(scope="module")
def spandrel():
    install_torchvision_stub()
    return pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the RCAN oracle; CI installs it")


@pytest.mark.parametrize("config", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_matches_spandrel(spandrel, config):
    state_dict = random_rcan(1, **config)
    name, ours, params = load(state_dict)
    assert name == "RCAN"
    squeezed = config["n_feats"] // config["reduction"]  # reduction 3 or 4 both squeeze 8 to 2 channels
    assert params == dict(config, reduction=config["n_feats"] // squeezed, rgb_range=255.0)
    descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    assert descriptor.architecture.id == "RCAN" and descriptor.scale == config["scale"]
    x = image(2)
    with torch.no_grad():
        expected = descriptor.model.eval()(x.clone())  # spandrel scales its input in place
        got = ours(x)
    assert got.shape == (1, 3, 12 * config["scale"], 10 * config["scale"])
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("config", CASES[2:], ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_matches_float64_transcription(config):
    state_dict = random_rcan(3, **config)
    _, model, _ = load(state_dict)
    x = image(4, 9, 11)
    with torch.no_grad():
        got = model.double()(x.double())
    assert (got - reference.rcan_official(state_dict, x)).abs().max().item() < 1e-10


def to_basicsr(state_dict: dict, groups: int, blocks: int) -> dict:
    """The BasicSR layout of official RCAN weights, by explicit enumeration (mean shifts dropped)."""
    names = {"head.0": "conv_first", f"body.{groups}": "conv_after_body", "tail.1": "conv_last"}
    for g in range(groups):
        names[f"body.{g}.body.{blocks}"] = f"body.{g}.conv"
        for b in range(blocks):
            old, new = f"body.{g}.body.{b}.body", f"body.{g}.residual_group.{b}.rcab"
            names.update({f"{old}.0": f"{new}.0", f"{old}.2": f"{new}.2",
                          f"{old}.3.conv_du.0": f"{new}.3.attention.1",
                          f"{old}.3.conv_du.2": f"{new}.3.attention.3"})
    converted = {}
    for key, tensor in state_dict.items():
        module, kind = key.rsplit(".", 1)
        if module.startswith("tail.0."):
            converted[f"upsample.{module[len('tail.0.'):]}.{kind}"] = tensor
        elif module not in ("sub_mean", "add_mean"):
            converted[f"{names[module]}.{kind}"] = tensor
    return converted


@pytest.mark.parametrize("scale", [3, 4])
def test_basicsr_layout_loads_and_matches(scale):
    torch.manual_seed(6)
    official = RCAN(**SMALL, scale=scale).state_dict()  # default mean shifts: what BasicSR computes inline
    basicsr = to_basicsr(official, SMALL["n_resgroups"], SMALL["n_resblocks"])
    assert "conv_first.weight" in basicsr and not any(k.startswith("sub_mean") for k in basicsr)
    name, from_basicsr, params = load(basicsr)
    assert name == "RCAN" and params == dict(SMALL, scale=scale, rgb_range=255.0)
    _, from_official, _ = load(official)
    x = image(7)
    with torch.no_grad():
        got = from_basicsr(x)
        assert torch.equal(got, from_official(x))
    assert (got.double() - reference.rcan_basicsr(basicsr, x)).abs().max().item() < 1e-5


def test_official_keys_load_strictly():
    """Every key and shape of the authors' x4 model (REFERENCE.md §3.1) loads into the default RCAN."""
    shapes = {"sub_mean.weight": (3, 3, 1, 1), "sub_mean.bias": (3,), "add_mean.weight": (3, 3, 1, 1),
              "add_mean.bias": (3,), "head.0.weight": (64, 3, 3, 3), "head.0.bias": (64,),
              "body.10.weight": (64, 64, 3, 3), "body.10.bias": (64,), "tail.1.weight": (3, 64, 3, 3),
              "tail.1.bias": (3,)}
    for g in range(10):
        shapes.update({f"body.{g}.body.20.weight": (64, 64, 3, 3), f"body.{g}.body.20.bias": (64,)})
        for b in range(20):
            p = f"body.{g}.body.{b}.body"
            shapes.update({f"{p}.0.weight": (64, 64, 3, 3), f"{p}.0.bias": (64,),
                           f"{p}.2.weight": (64, 64, 3, 3), f"{p}.2.bias": (64,),
                           f"{p}.3.conv_du.0.weight": (4, 64, 1, 1),
                           f"{p}.3.conv_du.0.bias": (4,), f"{p}.3.conv_du.2.weight": (64, 4, 1, 1),
                           f"{p}.3.conv_du.2.bias": (64,)})
    for i in (0, 2):
        shapes.update({f"tail.0.{i}.weight": (256, 64, 3, 3), f"tail.0.{i}.bias": (256,)})
    state_dict = {k: torch.zeros(s) for k, s in shapes.items()}
    state_dict["add_mean.bias"] = 255 * torch.tensor(reference.DIV2K_MEAN)
    name, model, params = load(state_dict)
    assert name == "RCAN" and params == dict(rcan.FAMILY.presets["RCAN"], scale=4, rgb_range=255.0)
    assert sum(p.numel() for p in model.parameters()) == 15_592_379


def test_x8_is_detected_as_scale_8():
    state_dict = RCAN(**SMALL, scale=8).state_dict()
    assert "tail.0.4.weight" in state_dict and "tail.0.6.weight" not in state_dict
    assert load(state_dict)[2]["scale"] == 8


def test_scale_hint_must_agree():
    state_dict = RCAN(**SMALL, scale=3).state_dict()
    assert load(state_dict, scale=3)[2]["scale"] == 3
    with pytest.raises(MissingHyperParameter, match="x3, not x2"):
        load(state_dict, scale=2)


def test_malformed_upsampler_is_a_clear_error():
    state_dict = RCAN(**SMALL, scale=2).state_dict()
    state_dict["tail.0.0.weight"] = torch.zeros(32, 16, 3, 3)
    with pytest.raises(MissingHyperParameter, match="tail.0.0.weight maps 16 to 32 channels"):
        load(state_dict)
    state_dict = RCAN(**SMALL, scale=3).state_dict()
    state_dict.update({"tail.0.2.weight": torch.zeros(64, 16, 3, 3), "tail.0.2.bias": torch.zeros(64)})
    with pytest.raises(MissingHyperParameter, match="neither x2\\^n nor x3"):
        load(state_dict)


def test_rgb_range_is_read_from_the_mean_shift():
    assert load(RCAN(**SMALL, scale=2, rgb_range=1.0).state_dict())[2]["rgb_range"] == 1.0
    state_dict = RCAN(**SMALL, scale=2).state_dict()
    state_dict["add_mean.bias"] = torch.full((3,), 20.0)
    with pytest.raises(MissingHyperParameter, match="rgb_range"):
        load(state_dict)


def test_detection_never_confuses_rcan_han_pan():
    rcan_sd = RCAN(**SMALL, scale=2).state_dict()
    han_sd = HAN(**SMALL, scale=2).state_dict()
    basicsr_sd = to_basicsr(rcan_sd, SMALL["n_resgroups"], SMALL["n_resblocks"])
    assert rcan.detect(rcan_sd) and rcan.detect(basicsr_sd)
    assert not rcan.detect(han_sd)  # whatever the registry order
    assert not rcan.detect(PAN(scale=2).state_dict())
    assert archs.detect_family(rcan_sd).name == "RCAN"
    assert archs.detect_family(basicsr_sd).name == "RCAN"
    assert archs.detect_family(han_sd).name == "HAN"


def test_official_weights_pass_through_remap_unchanged():
    state_dict = RCAN(**SMALL, scale=2).state_dict()
    assert rcan.remap_keys(state_dict) is state_dict


def test_channel_attention_layouts_agree():
    torch.manual_seed(8)
    rcan_style, hat_style = ChannelAttention(12, 3), PooledChannelAttention(12, 3)
    hat_style.load_state_dict({k.replace("conv_du.0", "attention.1").replace("conv_du.2", "attention.3"): v
                               for k, v in rcan_style.state_dict().items()}, strict=True)
    x = torch.randn(2, 12, 5, 7)
    assert torch.equal(rcan_style(x), hat_style(x))


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/RCAN").glob("*.yml"))


def test_option_files_cover_the_released_scales():
    assert [path.name for path in OPTION_FILES] == [f"test_RCAN_BIX{s}.yml" for s in (2, 3, 4, 8)]


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    options = yaml.safe_load(path.read_text())
    network = dict(options["network_g"])
    assert network.pop("type") == "RCAN"
    assert network == dict(rcan.FAMILY.presets["RCAN"], scale=options["scale"], rgb_range=255)
    inspect.signature(RCAN).bind(**network)
    assert options["path"]["pretrain_network_g"].endswith(f"RCAN_BIX{options['scale']}.pt")
    for metric in options["val"]["metrics"].values():
        assert metric["crop_border"] == options["scale"] and metric["test_y_channel"] is True


@pytest.mark.parametrize(
    "variant",
    [{"norm": False, "scale": 2}, {"norm": False, "scale": 1}, {"unshuffle_mod": True, "scale": 2},
     {"unshuffle_mod": True, "scale": 1}, {"unshuffle_mod": True, "norm": False, "scale": 2},
     {"n_feats": 96, "scale": 4}],
    ids=lambda v: "-".join(f"{k}{v[k]}" for k in v),
)
def test_community_variants_match_spandrel(spandrel, variant):
    """traiNNer-redux/neosr RCANs (spandrel's class, which traiNNer uses): without mean shift, with a
    PixelUnshuffle head for x1/x2, 96 features; detected with the constructor's settings, equal outputs."""
    from spandrel.architectures.RCAN import RCAN as SpandrelRCAN

    config = {"n_resgroups": 2, "n_resblocks": 1, "n_feats": 24, "reduction": 4, **variant}
    torch.manual_seed(8)
    theirs = SpandrelRCAN(**config).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.02 * torch.randn_like(p))
    name, ours, params = load(theirs.state_dict())
    norm = config.get("norm", True)
    expected = {"n_resgroups": 2, "n_resblocks": 1, "n_feats": config["n_feats"], "reduction": 4,
                "scale": config["scale"], "rgb_range": 255.0 if norm else 1.0}
    expected |= {"unshuffle_mod": True} if config.get("unshuffle_mod") else {}
    expected |= {} if norm else {"norm": False}
    assert name == "RCAN" and params == expected
    for h, w in ((13, 10), (16, 12)):  # sizes off and on the unshuffle factor
        x = image(9, h, w)
        with torch.no_grad():
            got, want = ours(x), theirs(x.clone())
        assert got.shape == want.shape == (1, 3, h * config["scale"], w * config["scale"])
        assert (got - want).abs().max().item() < 1e-5
