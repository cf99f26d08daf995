"""VGG feature extractor (BasicSR's VGGFeatureExtractor on torchvision-format weights): features against a
float64 transcription (tests/oracles/vgg_reference.py) on synthetic weights with torchvision's VGG19 keys
and shapes, input normalisation in closed form, truncation, BasicSR's key and layer names, freezing, errors.

Out of the repo, BasicSR 8d56e3a's own VGGFeatureExtractor (torchvision replaced by a stand-in building the
same `features` layout) on these synthetic weights gave the same key set and outputs identical to ours
(max abs diff 0.0) for the default, range_norm, remove_pooling, pooling_stride=1 and no-input-norm options.
"""

from __future__ import annotations

import pytest
import torch

from archs import vgg
from archs.vgg import VGGFeatureExtractor, layer_names, vgg_features
from tests.oracles import vgg_reference as reference

# torchvision vgg19 `features`: the 16 convolutions' indices and (out, in) channels; every kernel is 3x3.
VGG19_CONVS = {
    0: (64, 3),
    2: (64, 64),
    5: (128, 64),
    7: (128, 128),
    10: (256, 128),
    12: (256, 256),
    14: (256, 256),
    16: (256, 256),
    19: (512, 256),
    21: (512, 512),
    23: (512, 512),
    25: (512, 512),
    28: (512, 512),
    30: (512, 512),
    32: (512, 512),
    34: (512, 512),
}
CLASSIFIER = {
    "classifier.0.weight": (4096, 25088),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}
# BasicSR's NAMES['vgg19'] (basicsr/archs/vgg_arch.py).
VGG19_NAMES = [
    "conv1_1",
    "relu1_1",
    "conv1_2",
    "relu1_2",
    "pool1",
    "conv2_1",
    "relu2_1",
    "conv2_2",
    "relu2_2",
    "pool2",
    "conv3_1",
    "relu3_1",
    "conv3_2",
    "relu3_2",
    "conv3_3",
    "relu3_3",
    "conv3_4",
    "relu3_4",
    "pool3",
    "conv4_1",
    "relu4_1",
    "conv4_2",
    "relu4_2",
    "conv4_3",
    "relu4_3",
    "conv4_4",
    "relu4_4",
    "pool4",
    "conv5_1",
    "relu5_1",
    "conv5_2",
    "relu5_2",
    "conv5_3",
    "relu5_3",
    "conv5_4",
    "relu5_4",
    "pool5",
]


@pytest.fixture(scope="module")
def weights() -> dict[str, torch.Tensor]:
    """Random He-scaled VGG19 weights keyed as torchvision's file, with its classifier (on the meta device:
    never read)."""
    generator = torch.Generator().manual_seed(0)
    found = {}
    for index, (out, inp) in VGG19_CONVS.items():
        found[f"features.{index}.weight"] = (
            torch.randn(out, inp, 3, 3, generator=generator) * (2 / (9 * inp)) ** 0.5
        )
        found[f"features.{index}.bias"] = torch.randn(out, generator=generator) * 0.1
    found.update((key, torch.empty(size, device="meta")) for key, size in CLASSIFIER.items())
    return found


def image(seed: int, h: int = 36, w: int = 41) -> torch.Tensor:
    return torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected).abs().max() / expected.abs().max()).item()


def test_layer_names_are_basicsrs():
    assert layer_names("vgg19") == VGG19_NAMES
    assert [i for i, name in enumerate(VGG19_NAMES) if name.startswith("conv")] == list(VGG19_CONVS)
    assert layer_names("vgg11")[:7] == [
        "conv1_1",
        "relu1_1",
        "pool1",
        "conv2_1",
        "relu2_1",
        "pool2",
        "conv3_1",
    ]
    assert layer_names("vgg16_bn")[:8] == [
        "conv1_1",
        "bn1_1",
        "relu1_1",
        "conv1_2",
        "bn1_2",
        "relu1_2",
        "pool1",
        "conv2_1",
    ]
    assert len(layer_names("vgg13")) == 25 and len(layer_names("vgg16")) == 31
    with pytest.raises(ValueError, match="unknown vgg_type 'vgg18'"):
        layer_names("vgg18")


@pytest.mark.parametrize("range_norm", [False, True])
def test_features_match_transcription(weights, range_norm):
    layers = ["relu1_1", "pool2", "conv3_4", "conv5_4", "pool5"]
    net = vgg_features(weights, layers, range_norm=range_norm)
    x = image(1) * 2 - 1 if range_norm else image(1)
    got = net(x)
    expected = reference.vgg19_features(weights, x, range_norm=range_norm)
    assert list(got) == layers
    assert got["pool5"].shape == (2, 512, 1, 1) and got["conv3_4"].shape == (2, 256, 9, 10)
    for name in layers:
        assert relative_error(got[name], expected[name]) < 1e-5, name


@pytest.mark.parametrize("remove_pooling, pooling_stride", [(True, 2), (False, 1)])
def test_pooling_options(weights, remove_pooling, pooling_stride):
    net = vgg_features(weights, ["relu3_1"], remove_pooling=remove_pooling, pooling_stride=pooling_stride)
    x = image(2, 12, 13)
    got = net(x)["relu3_1"]
    expected = reference.vgg19_features(
        weights, x, pooling_stride=pooling_stride, remove_pooling=remove_pooling
    )
    assert got.shape == ((2, 256, 12, 13) if remove_pooling else (2, 256, 10, 11))
    assert relative_error(got, expected["relu3_1"]) < 1e-5


def test_input_normalisation_in_closed_form():
    """conv1_1 as a per-channel identity: its first three outputs are the network's normalised input."""
    delta = torch.zeros(64, 3, 3, 3)
    delta[torch.arange(3), torch.arange(3), 1, 1] = 1
    identity = {"features.0.weight": delta, "features.0.bias": torch.zeros(64)}
    x = image(3, 5, 6)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    cases = [
        ({}, x, (x - mean) / std),
        ({"range_norm": True}, x, ((x + 1) / 2 - mean) / std),
        ({"use_input_norm": False}, x, x),
        ({"use_input_norm": False, "range_norm": True}, x, (x + 1) / 2),
    ]
    for options, given, wanted in cases:
        got = vgg_features(identity, ["conv1_1"], **options)(given)["conv1_1"]
        assert (got[:, :3] - wanted).abs().max() < 1e-6, options
        assert got[:, 3:].abs().max() == 0


def test_truncated_after_the_last_layer_with_basicsrs_keys(weights):
    net = vgg_features(weights, ["relu2_1", "conv1_2"])
    assert list(net.vgg_net._modules) == VGG19_NAMES[:7]
    assert set(net.state_dict()) == {"mean", "std"} | {
        f"vgg_net.{name}.{kind}" for name in ("conv1_1", "conv1_2", "conv2_1") for kind in ("weight", "bias")
    }
    assert torch.equal(net.state_dict()["vgg_net.conv2_1.weight"], weights["features.5.weight"])
    assert set(VGGFeatureExtractor(["conv1_1"], use_input_norm=False).state_dict()) == {
        "vgg_net.conv1_1.weight",
        "vgg_net.conv1_1.bias",
    }
    without_later_layers = {k: v for k, v in weights.items() if k.startswith(("features.0.", "features.2."))}
    assert list(vgg_features(without_later_layers, ["relu1_2"])(image(4, 4, 4))) == ["relu1_2"]


def test_batch_norm_variant_maps_torchvision_indices():
    """vgg11_bn: conv1_1, bn1_1, relu1_1, pool1, conv2_1, bn2_1 are torchvision's features.0 to 5."""
    generator = torch.Generator().manual_seed(5)
    state = {
        "features.0.weight": torch.randn(64, 3, 3, 3, generator=generator),
        "features.4.weight": torch.randn(128, 64, 3, 3, generator=generator),
    }
    for index, width in ((0, 64), (1, 64), (4, 128), (5, 128)):
        for key in ("bias", "weight", "running_mean") if index in (1, 5) else ("bias",):
            state[f"features.{index}.{key}"] = torch.randn(width, generator=generator)
        if index in (1, 5):
            state[f"features.{index}.running_var"] = torch.rand(width, generator=generator) + 0.5
            state[f"features.{index}.num_batches_tracked"] = torch.tensor(7)
    net = vgg_features(state, ["bn2_1"], vgg_type="vgg11_bn")
    assert list(net.vgg_net._modules) == ["conv1_1", "bn1_1", "relu1_1", "pool1", "conv2_1", "bn2_1"]
    assert torch.equal(net.vgg_net.bn2_1.running_var, state["features.5.running_var"])
    assert torch.equal(net.vgg_net.conv2_1.weight, state["features.4.weight"])
    assert net(image(6, 6, 6))["bn2_1"].shape == (2, 128, 3, 3)


def test_frozen_weights_pass_gradients_to_the_input(weights):
    net = vgg_features(weights, ["relu2_2"])
    assert not net.vgg_net.training and not any(p.requires_grad for p in net.parameters())
    x = image(7, 8, 8).requires_grad_()
    net(x)["relu2_2"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    trainable = vgg_features(weights, ["relu2_2"], requires_grad=True)
    assert trainable.vgg_net.training and all(p.requires_grad for p in trainable.parameters())


def test_missing_or_misshapen_weights_are_clear_errors(weights):
    with pytest.raises(ValueError, match=r"not torchvision vgg19 weights: missing features\.34\.weight"):
        vgg_features({k: v for k, v in weights.items() if k != "features.34.weight"}, ["relu5_4"])
    vgg16 = dict(weights, **{"features.16.weight": torch.zeros(512, 256, 3, 3)})
    with pytest.raises(
        ValueError, match=r"wrong shape features\.16\.weight \(512, 256, 3, 3\) \(expected \(256"
    ):
        vgg_features(vgg16, ["conv3_4"])
    with pytest.raises(ValueError, match="has no layer"):
        VGGFeatureExtractor(["relu6_1"])


def test_release_file_constants():
    assert vgg.VGG19_URL.endswith("/" + vgg.VGG19_FILENAME)
    assert vgg.VGG19_FILENAME == f"vgg19-{vgg.VGG19_SHA256_PREFIX}.pth"
