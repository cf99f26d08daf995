"""GAN discriminators: official key sets (written out from Real-ESRGAN a4abfb2 and BasicSR 8d56e3a), outputs
against float64 transcriptions (tests/oracles/discriminator_reference.py) in eval and training mode, the
spectral-norm power iteration, output shapes, input-size errors and the option-type names."""

from __future__ import annotations

import pytest
import torch

from archs.discriminators import DISCRIMINATORS, UNetDiscriminatorSN, VGGStyleDiscriminator
from tests.oracles import discriminator_reference as reference

SN_CONVS = [f"conv{i}" for i in range(1, 9)]


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected).abs().max() / expected.abs().max()).item()


def unet_keys() -> set[str]:
    """conv0 and conv9 plain (with bias); conv1..conv8 spectral-normalised, bias-free."""
    keys = {"conv0.weight", "conv0.bias", "conv9.weight", "conv9.bias"}
    return keys | {f"{c}.{k}" for c in SN_CONVS for k in ("weight_orig", "weight_u", "weight_v")}


def vgg_keys(stages: int) -> set[str]:
    """conv0_0 with bias, then bias-free convs each followed by a BatchNorm2d, then linear1/2."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {
        "conv0_0.weight",
        "conv0_0.bias",
        "conv0_1.weight",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
    } | {f"bn0_1.{k}" for k in bn}
    for i in range(1, stages):
        for j in (0, 1):
            keys |= {f"conv{i}_{j}.weight"} | {f"bn{i}_{j}.{k}" for k in bn}
    return keys


def test_official_key_sets_and_shapes():
    unet = UNetDiscriminatorSN(num_in_ch=3, num_feat=64, skip_connection=True).state_dict()
    assert set(unet) == unet_keys()
    assert unet["conv3.weight_orig"].shape == (512, 256, 4, 4)
    assert unet["conv3.weight_u"].shape == (512,) and unet["conv3.weight_v"].shape == (256 * 16,)
    with torch.device("meta"):
        vgg128 = VGGStyleDiscriminator(num_in_ch=3, num_feat=64).state_dict()
        vgg256 = VGGStyleDiscriminator(num_in_ch=3, num_feat=64, input_size=256).state_dict()
    assert set(vgg128) == vgg_keys(5) and set(vgg256) == vgg_keys(6)
    assert vgg128["linear1.weight"].shape == (100, 64 * 8 * 4 * 4)
    assert vgg256["conv5_1.weight"].shape == (512, 512, 4, 4)


def random_unet(seed: int, skip_connection: bool = True, power_iterations: int = 0) -> UNetDiscriminatorSN:
    """A tiny U-Net; `power_iterations` training-mode forwards bring u, v near the top singular vectors, as
    in a trained checkpoint (fresh ones are random, so sigma is small and the outputs large)."""
    torch.manual_seed(seed)
    net = UNetDiscriminatorSN(3, num_feat=4, skip_connection=skip_connection)
    with torch.no_grad():
        for _ in range(power_iterations):
            net.train()(torch.zeros(1, 3, 8, 8))
    return net


@pytest.mark.parametrize("skip_connection", [True, False])
def test_unet_eval_matches_transcription(skip_connection):
    """Eval mode: weight_orig / (u·Wv) with the stored u, v, which stay as they are."""
    net = random_unet(0, skip_connection, power_iterations=20).eval()
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = net(x)
    expected, vectors = reference.unet_discriminator_sn(state_dict, x, skip_connection)
    assert got.shape == (2, 1, 16, 24)
    assert relative_error(got, expected) < 1e-5
    for name in SN_CONVS:
        assert torch.equal(net.state_dict()[f"{name}.weight_u"], state_dict[f"{name}.weight_u"])
        assert torch.equal(vectors[name][0].float(), state_dict[f"{name}.weight_u"])


def test_unet_training_forward_takes_one_power_iteration():
    net = random_unet(2).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(1, 3, 8, 16, generator=torch.Generator().manual_seed(3))
    got = net(x)
    expected, vectors = reference.unet_discriminator_sn(before, x, training=True)
    assert relative_error(got.detach(), expected) < 1e-5
    after = net.state_dict()
    for name in SN_CONVS:
        u, v = vectors[name]
        assert not torch.allclose(after[f"{name}.weight_u"], before[f"{name}.weight_u"], atol=1e-3)
        assert (after[f"{name}.weight_u"].double() - u).abs().max() < 1e-6
        assert (after[f"{name}.weight_v"].double() - v).abs().max() < 1e-6
    got.mean().backward()  # sigma depends on weight_orig, so it receives gradients
    assert net.conv1.weight_orig.grad is not None and net.conv1.weight_orig.grad.abs().sum() > 0


def random_vgg(seed: int, input_size: int) -> VGGStyleDiscriminator:
    """A tiny discriminator whose batch norms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(seed)
    net = VGGStyleDiscriminator(3, num_feat=2, input_size=input_size)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return net


@pytest.mark.parametrize("input_size", [128, 256])
def test_vgg_style_matches_transcription(input_size):
    net = random_vgg(4, input_size)
    state_dict = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        evaluated = net.eval()(x)
        trained = net.train()(x)
    assert evaluated.shape == trained.shape == (2, 1)
    assert relative_error(evaluated, reference.vgg_style_discriminator(state_dict, x)) < 1e-5
    assert relative_error(trained, reference.vgg_style_discriminator(state_dict, x, training=True)) < 1e-5


def test_vgg_style_rejects_other_sizes():
    with pytest.raises(ValueError, match="128 or 256, not 192"):
        VGGStyleDiscriminator(3, 2, input_size=192)
    with pytest.raises(ValueError, match=r"takes 128x128 inputs, not \(128, 120\)"):
        random_vgg(6, 128)(torch.rand(1, 3, 128, 120))


def test_option_type_names():
    """The `network_d.type` names of Real-ESRGAN's and BasicSR's option files, old ones included."""
    assert isinstance(DISCRIMINATORS["UNetDiscriminatorSN"](num_in_ch=3, num_feat=4), UNetDiscriminatorSN)
    assert isinstance(DISCRIMINATORS["UNetDiscriminatorSN_basicsr"](3, 4), UNetDiscriminatorSN)
    with torch.device("meta"):
        names = ("VGGStyleDiscriminator", "VGGStyleDiscriminator128", "VGGStyleDiscriminator256")
        sizes = {name: DISCRIMINATORS[name](num_in_ch=3, num_feat=4).input_size for name in names}
    assert sizes == {
        "VGGStyleDiscriminator": 128,
        "VGGStyleDiscriminator128": 128,
        "VGGStyleDiscriminator256": 256,
    }
