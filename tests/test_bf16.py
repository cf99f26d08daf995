"""Every family runs forward and backward under CPU bfloat16 autocast (training with `amp: bf16`, inference
in bf16): outputs in bf16, finite, gradients in float32 reaching the parameters. (How close bf16 stays to
float32 is a property of trained weights: the families' own tests check it on official files.)"""

from __future__ import annotations

import pytest
import torch

import archs
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
