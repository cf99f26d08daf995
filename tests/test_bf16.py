"""Every family runs forward and backward under CPU bfloat16 autocast (training with `amp: bf16`, inference
in bf16): outputs in bf16, finite, gradients in float32 reaching the parameters. (How close bf16 stays to
float32 is a property of trained weights: the families' own tests check it on official files.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archs
from archs.blocks import DilatedConv2d
from archs.registry import Family


def smallest(family: Family) -> tuple[torch.nn.Module, int]:
    """The family's smallest preset, x2 (scale 1 for restoration presets), seeded weights; and its scale."""

    def scale(preset: dict) -> int:
        return 1 if family.scales == (1,) or preset.get("upsampler") == "" else 2

    def build(preset: dict) -> torch.nn.Module:
        return (
            family.build(**preset) if family.scales == (1,) else family.build(**preset, scale=scale(preset))
        )

    with torch.device("meta"):
        sizes = {name: sum(p.numel() for p in build(p).parameters()) for name, p in family.presets.items()}
    torch.manual_seed(0)
    preset = family.presets[min(sizes, key=sizes.get)]
    model = build(preset)
    with torch.no_grad():  # trained weights are nowhere exactly zero: no branch may stay silent
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    return model, scale(preset)


@pytest.mark.parametrize("family", archs.FAMILIES, ids=lambda family: family.name)
def test_bf16_autocast_forward_and_backward(family):
    model, scale = smallest(family)
    model.train()
    side = max(family.multiple_of, 8) * 2
    torch.manual_seed(1)
    x = torch.rand(2, 3, side, side + family.multiple_of)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape[-1] == x.shape[-1] * scale and torch.isfinite(out).all()
    out.float().square().mean().backward()
    reached = {key for key, p in model.named_parameters() if p.grad is not None}
    assert all(
        p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
        for p in model.parameters()
        if p.grad is not None
    )
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()  # float32: autocast must cut no path to a parameter
    assert reached == {key for key, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("family", archs.FAMILIES, ids=lambda family: family.name)
def test_bf16_convolution_weight_gradients_equal_float64_of_their_own_inputs(family):
    """Each convolution's weight gradient under CPU bf16 autocast, from a channels-last input (the trainer's
    `channels_last` option), equals the float64 gradient recomputed from the bf16 input and output gradient
    that convolution saw. (torch 2.13's oneDNN gets dilated ones wrong: see `archs.blocks.DilatedConv2d`.)
    Per-layer, since whole random networks are too chaotic to compare bf16 with float32 end to end."""
    model, _ = smallest(family)
    model.train()
    calls: dict[str, list] = {}

    def record(name: str):
        def hook(module: nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
            call = [inputs[0].detach().to(output.dtype), output.dtype, None]
            output.register_hook(lambda grad: call.__setitem__(2, grad.detach()))
            calls.setdefault(name, []).append(call)

        return hook

    convs = {name: m for name, m in model.named_modules() if type(m) in (nn.Conv2d, DilatedConv2d)}
    for name, conv in convs.items():
        conv.register_forward_hook(record(name))
    side = max(family.multiple_of, 16) * 2  # the dilated-weight-gradient fault needs about 32 x 48 and up
    torch.manual_seed(1)
    x = torch.rand(2, 3, side, side + side // 2).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().square().mean().backward()
    checked = 0
    for name, conv in convs.items():
        if name not in calls:  # weights some families apply through F.linear/F.conv2d themselves
            continue
        truth = torch.zeros(conv.weight.shape, dtype=torch.float64)
        for inputs, dtype, grad in (call for call in calls[name] if call[2] is not None):  # else unused
            weight = conv.weight.detach().to(dtype).double().requires_grad_()
            nn.Conv2d._conv_forward(conv, inputs.double(), weight, None).backward(grad.double())
            truth += weight.grad
        found = torch.zeros_like(truth) if conv.weight.grad is None else conv.weight.grad.double()
        error = (found - truth).norm() / truth.norm().clamp_min(1e-30)
        assert error < 2e-2, f"{name}: weight gradient off by {error:.3g} (relative)"
        checked += 1
    assert checked == len(calls) > 0


@pytest.mark.parametrize(("groups", "kernel", "dilation"), [(36, 3, 2), (4, 5, 3), (1, 3, 2)])
def test_dilated_convolution_trains_in_bf16_from_channels_last_input(groups, kernel, dilation):
    """`DilatedConv2d` is nn.Conv2d (same keys, same output) whose bf16 weight gradient from a channels-last
    input equals float64's within bf16 rounding: plain nn.Conv2d's is wrong there with torch 2.13."""
    torch.manual_seed(0)
    conv = DilatedConv2d(36, 36, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=groups)
    plain = nn.Conv2d(36, 36, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=groups)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 36, 32, 48).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 36, 32, 48)
    torch.testing.assert_close(conv(x), plain(x), rtol=0, atol=0)

    weight = conv.weight.detach().to(torch.bfloat16).double().requires_grad_()
    rounded = x.to(torch.bfloat16).double(), grad.to(torch.bfloat16).double()
    plain._conv_forward(rounded[0], weight, None).backward(rounded[1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(x).backward(grad.to(torch.bfloat16))
    assert (conv.weight.grad.double() - weight.grad).norm() / weight.grad.norm() < 1e-2
