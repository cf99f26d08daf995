"""HAN: LAM and CSAM against NumPy float64 equations, the network against a transcription, keys, detection."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import archs
from archs import han
from archs.han import HAN, ChannelSpatialAttention, LayerAttention
from archs.rcan import RCAN
from tests.helpers.detect import load
from tests.oracles import reference

SMALL = {"n_resgroups": 2, "n_resblocks": 2, "n_feats": 8, "reduction": 4}


def random_han(seed: int, **config) -> dict[str, torch.Tensor]:
    """Weights of a seeded HAN with non-zero attention gains (at their initial 0, LAM and CSAM are hidden)."""
    torch.manual_seed(seed)
    model = HAN(**config)
    with torch.no_grad():
        model.la.gamma.fill_(0.6)
        model.csa.gamma.fill_(-0.8)
        model.csa.conv.weight.normal_()
        model.sub_mean.bias.add_(torch.randn(3))
    return model.state_dict()


def test_layer_attention_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(scale=0.3, size=(2, 5, 3, 4, 6))
    module = LayerAttention().double()
    with torch.no_grad():
        module.gamma.fill_(0.7)
        got = module(torch.from_numpy(x)).numpy()
    expected = reference.layer_attention_np(x, 0.7)
    assert got.shape == (2, 15, 4, 6)
    assert np.abs(got - expected).max() < 1e-12
    assert np.abs(expected - x.reshape(2, 15, 4, 6)).max() > 0.1  # the attention term is not negligible


def test_channel_spatial_attention_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 5, 7))
    module = ChannelSpatialAttention().double()
    kernel = rng.normal(size=(3, 3, 3))
    with torch.no_grad():
        module.conv.weight.copy_(torch.from_numpy(kernel).view(1, 1, 3, 3, 3))
        module.conv.bias.fill_(0.2)
        module.gamma.fill_(-1.3)
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - reference.csa_np(x, kernel, 0.2, -1.3)).max() < 1e-12


CONFIGS = [dict(SMALL, scale=2), dict(SMALL, scale=3),
           {"n_resgroups": 3, "n_resblocks": 1, "n_feats": 12, "reduction": 3, "scale": 4},
           dict(SMALL, scale=1)]  # x1: the official Upsampler is empty (log2(1) = 0 steps)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_network_matches_float64_transcription(config):
    state_dict = random_han(2, **config)
    name, model, params = load(state_dict)
    assert name == "HAN" and params == dict(config, rgb_range=255.0)
    x = torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model.double()(x.double())
    assert got.shape == (1, 3, 7 * config["scale"], 9 * config["scale"])
    assert (got - reference.han_official(state_dict, x)).abs().max().item() < 1e-9


def test_float32_batch_forward_is_finite():
    _, model, _ = load(random_han(4, **SMALL, scale=2))
    with torch.no_grad():
        out = model(torch.rand(2, 3, 10, 10))
    assert out.shape == (2, 3, 20, 20) and torch.isfinite(out).all()


def official_x4_shapes() -> dict[str, tuple[int, ...]]:
    """Every key and shape of the authors' HAN x4 (REFERENCE.md §3.2): 10 x 20 RCABs, 64 features."""
    shapes = {"sub_mean.weight": (3, 3, 1, 1), "sub_mean.bias": (3,), "add_mean.weight": (3, 3, 1, 1),
              "add_mean.bias": (3,), "head.0.weight": (64, 3, 3, 3), "head.0.bias": (64,),
              "body.10.weight": (64, 64, 3, 3), "body.10.bias": (64,), "la.gamma": (1,), "csa.gamma": (1,),
              "csa.conv.weight": (1, 1, 3, 3, 3), "csa.conv.bias": (1,), "last_conv.weight": (64, 704, 3, 3),
              "last_conv.bias": (64,), "last.weight": (64, 128, 3, 3), "last.bias": (64,),
              "tail.1.weight": (3, 64, 3, 3), "tail.1.bias": (3,)}
    for g in range(10):
        shapes.update({f"body.{g}.body.20.weight": (64, 64, 3, 3), f"body.{g}.body.20.bias": (64,)})
        for b in range(20):
            p = f"body.{g}.body.{b}.body"
            shapes.update({f"{p}.0.weight": (64, 64, 3, 3), f"{p}.0.bias": (64,),
                           f"{p}.2.weight": (64, 64, 3, 3), f"{p}.2.bias": (64,),
                           f"{p}.3.conv_du.0.weight": (4, 64, 1, 1), f"{p}.3.conv_du.0.bias": (4,),
                           f"{p}.3.conv_du.2.weight": (64, 4, 1, 1), f"{p}.3.conv_du.2.bias": (64,)})
    for index in (0, 2):
        shapes.update({f"tail.0.{index}.weight": (256, 64, 3, 3), f"tail.0.{index}.bias": (256,)})
    return shapes


def test_official_keys_load_strictly():
    state_dict = {k: torch.zeros(s) for k, s in official_x4_shapes().items()}
    state_dict["add_mean.bias"] = 255 * torch.tensor(reference.DIV2K_MEAN)
    name, model, params = load(state_dict)
    assert name == "HAN" and params == dict(han.FAMILY.presets["HAN"], scale=4, rgb_range=255.0)
    assert sum(p.numel() for p in model.parameters()) == 16_071_769


def test_x8_is_detected_as_scale_8():
    state_dict = HAN(**SMALL, scale=8).state_dict()
    assert "tail.0.4.weight" in state_dict
    assert load(state_dict)[2]["scale"] == 8
    with pytest.raises(archs.MissingHyperParameter, match="HAN weights are x8, not x4"):
        load(state_dict, scale=4)


def test_detection_never_confuses_han_and_rcan():
    han_sd = HAN(**SMALL, scale=4).state_dict()
    rcan_sd = RCAN(**SMALL, scale=4).state_dict()
    assert han.detect(han_sd) and not han.detect(rcan_sd)
    assert archs.detect_family(han_sd).name == "HAN"
    assert archs.detect_family(rcan_sd).name == "RCAN"
    families = [f.name for f in archs.FAMILIES]
    assert families.index("HAN") < families.index("RCAN")
    partial = {k: v for k, v in han_sd.items() if k != "csa.conv.weight"}  # not HAN, and still not RCAN
    assert not han.detect(partial) and not archs.get_family("RCAN").detect(partial)


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/HAN").glob("*.yml"))


def test_option_files_cover_the_released_scales():
    assert [path.name for path in OPTION_FILES] == [f"test_HAN_BIX{s}.yml" for s in (2, 3, 4, 8)]


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    options = yaml.safe_load(path.read_text())
    network = dict(options["network_g"])
    assert network.pop("type") == "HAN"
    assert network == dict(han.FAMILY.presets["HAN"], scale=options["scale"], rgb_range=255)
    inspect.signature(HAN).bind(**network)
    assert options["path"]["pretrain_network_g"].endswith(f"HAN_BIX{options['scale']}.pt")
    for metric in options["val"]["metrics"].values():
        assert metric["crop_border"] == options["scale"] and metric["test_y_channel"] is True
