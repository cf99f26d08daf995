"""RRDBNet (BasicSR's ESRGAN / Real-ESRGAN generator): parity with spandrel's ESRGAN module at x4, x2 and x1,
the official key names, the old ESRGAN and BSRGAN key layouts, detection, inference and file loading.

Read from BasicSR 8d56e3a `basicsr/archs/rrdbnet_arch.py`. spandrel's ESRGAN (0.4.2) is an independent
implementation in the original ESRGAN layout (growth channels fixed at 32), which pads x1/x2 inputs by
reflection to the unshuffle factor as Real-ESRGAN's inference does. Measured max |ours - spandrel|, fp32,
on the cases of test_matches_spandrel: 0.0 at every scale (the same operations in the same order; bound 1e-5).
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import archs
import sr
from archs import MissingHyperParameter, rrdbnet
from archs.rrdbnet import RRDBNet
from tests.helpers.detect import load
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

TINY = {"num_feat": 8, "num_block": 2, "num_grow_ch": 32}  # spandrel's ESRGAN has 32 growth channels


@pytest.fixture(scope="module")
def spandrel():
    install_torchvision_stub()
    return pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the oracle; CI installs it")


def random_weights(seed: int, **config) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return RRDBNet(**config).state_dict()


def image(seed: int, h: int, w: int, c: int = 3) -> torch.Tensor:
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed))


def official_keys(num_block: int) -> set[str]:
    """BasicSR's names: conv_first, body.<i>.rdb<1-3>.conv<1-5>, conv_body, conv_up1/2, conv_hr, conv_last."""
    convs = ["conv_first", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    convs += [f"body.{i}.rdb{r}.conv{c}" for i in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return {f"{conv}.{kind}" for conv in convs for kind in ("weight", "bias")}


@pytest.mark.parametrize("scale, inputs", [(4, 3), (2, 12), (1, 48)])
def test_official_keys_and_unshuffled_inputs(scale, inputs):
    state_dict = random_weights(0, scale=scale, num_feat=8, num_block=2, num_grow_ch=4)
    assert set(state_dict) == official_keys(2)
    assert state_dict["conv_first.weight"].shape == (8, inputs, 3, 3)
    assert state_dict["body.1.rdb3.conv5.weight"].shape == (8, 8 + 4 * 4, 3, 3)


@pytest.mark.parametrize("scale, size", [(4, (7, 9)), (2, (7, 10)), (2, (8, 6)), (1, (9, 6)), (1, (8, 12))])
def test_matches_spandrel(spandrel, scale, size):
    state_dict = random_weights(1, scale=scale, **TINY)
    descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    assert descriptor.architecture.id == "ESRGAN" and descriptor.scale == scale
    name, ours, params = load(state_dict)
    assert (name, params) == ("RRDBNet", dict(TINY, num_in_ch=3, num_out_ch=3, scale=scale))
    x = image(2, *size)
    with torch.no_grad():
        expected = descriptor.model.eval()(x)
        got = ours(x)
    assert got.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert (got - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_old_esrgan_layout_loads_as_the_same_network(spandrel, scale):
    """spandrel keeps the original ESRGAN's `model.<i>` layout: those weights load into ours unchanged."""
    state_dict = random_weights(3, scale=scale, **TINY)
    old = spandrel.ModelLoader().load_from_state_dict(state_dict).model.state_dict()
    assert "model.1.sub.2.weight" in old and "conv_first.weight" not in old
    name, ours, params = load(old)
    assert name == "RRDBNet" and params["scale"] == scale
    assert all(torch.equal(tensor, state_dict[key]) for key, tensor in ours.state_dict().items())


def test_old_esrgan_layout_loads_from_safetensors(spandrel, tmp_path):
    """A flat safetensors file of `model.<i>.*` keys is the Sequential itself, not a `model` wrapper."""
    state_dict = random_weights(4, scale=4, **TINY)
    old = spandrel.ModelLoader().load_from_state_dict(state_dict).model.state_dict()
    save_file({k: v.contiguous() for k, v in old.items()}, tmp_path / "esrgan.safetensors")
    net = sr.load_model(tmp_path / "esrgan.safetensors")
    assert net.family == "RRDBNet"
    assert all(torch.equal(t, state_dict[k]) for k, t in net.model.state_dict().items())


def bsrgan_keys(state_dict: dict) -> dict:
    """BasicSR's names renamed to BSRGAN's (RRDB_trunk.<i>.RDB<r>, trunk_conv, upconv1/2, HRconv)."""
    renames = {
        "body.": "RRDB_trunk.",
        "conv_body.": "trunk_conv.",
        "conv_up": "upconv",
        "conv_hr.": "HRconv.",
    }
    out = {}
    for key, tensor in state_dict.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :].replace(".rdb", ".RDB")
        out[key] = tensor
    return out


def test_bsrgan_layout_loads_as_the_same_network(spandrel):
    state_dict = random_weights(4, scale=4, **TINY)
    renamed = bsrgan_keys(state_dict)
    assert "RRDB_trunk.1.RDB3.conv5.bias" in renamed and "HRconv.weight" in renamed
    assert spandrel.ModelLoader().load_from_state_dict(renamed).architecture.id == "ESRGAN"
    _, ours, _ = load(renamed)
    assert all(torch.equal(tensor, state_dict[key]) for key, tensor in ours.state_dict().items())


@pytest.mark.parametrize("scale", [4, 2, 1])
@pytest.mark.parametrize(
    "config",
    [
        {"num_feat": 8, "num_block": 2, "num_grow_ch": 4},
        {"num_feat": 12, "num_block": 3, "num_grow_ch": 6, "num_out_ch": 1, "num_in_ch": 1},
    ],
)
def test_detection_and_inference_round_trip(scale, config):
    state_dict = random_weights(5, scale=scale, **config)
    assert archs.detect_family(state_dict) is rrdbnet.FAMILY
    expected = {"num_in_ch": 3, "num_out_ch": 3, **config, "scale": scale}
    assert rrdbnet.params_from_state_dict(state_dict, None) == expected
    assert rrdbnet.params_from_state_dict(state_dict, scale) == expected
    wrong = 4 if scale != 4 else 2
    with pytest.raises(MissingHyperParameter, match=f"x{scale}, not x{wrong}"):
        rrdbnet.params_from_state_dict(state_dict, wrong)


def test_presets_build_the_released_shapes():
    with torch.device("meta"):
        x4plus = RRDBNet(**rrdbnet.FAMILY.presets["RealESRGAN_x4plus"]).state_dict()
        anime = RRDBNet(**rrdbnet.FAMILY.presets["RealESRGAN_x4plus_anime_6B"]).state_dict()
    assert set(x4plus) == official_keys(23) and set(anime) == official_keys(6)
    assert x4plus["body.0.rdb1.conv5.weight"].shape == (64, 64 + 4 * 32, 3, 3)


def test_claims_no_other_network(spandrel):
    """No other family's weights, nor ESRGAN variants of other shapes (x8, ESRGAN+), are taken for RRDBNet."""
    for label, state_dict in foreign_state_dicts("RRDBNet").items():
        assert not rrdbnet.detect(state_dict), label
    esrgan = spandrel.architectures.ESRGAN.ESRGAN
    for variant in ({"scale": 8}, {"scale": 2}, {"plus": True}):
        old = esrgan(num_filters=8, num_blocks=1, **variant).state_dict()
        assert not rrdbnet.detect(old), variant


@pytest.mark.parametrize("suffix, scale", [(".safetensors", 2), (".pth", 4), (".pth", 1)])
def test_loads_from_a_file(tmp_path, suffix, scale):
    """Through sr.load_model, as Real-ESRGAN releases them (a .pth holding `params_ema`) or safetensors."""
    state_dict = random_weights(6, scale=scale, **TINY)
    path = tmp_path / f"net{suffix}"
    if suffix == ".pth":
        torch.save({"params_ema": state_dict}, path)
    else:
        save_file(state_dict, path)
    net = sr.load_model(path)
    assert (net.family, net.scale, net.params["num_block"]) == ("RRDBNet", scale, 2)
    assert net.in_channels == 3  # not the 12 / 48 channels conv_first sees after pixel-unshuffle at x2 / x1
    reference = RRDBNet(scale=scale, **TINY).eval()
    reference.load_state_dict(state_dict)
    x = image(7, 9, 11)
    with torch.no_grad():
        assert (net.model(x) - reference(x)).abs().max().item() < 1e-6
