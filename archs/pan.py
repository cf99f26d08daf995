"""PAN, pixel attention network (Zhao et al., ECCV Workshops 2020), key-compatible with the official weights.

Official code: zhaohengyuan1/PAN `codes/models/archs/PAN_arch.py`. Input and output are RGB in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class PA(nn.Module):
    """Pixel attention: x times a sigmoid gate from a 1x1 convolution."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """3x3 convolution gated by pixel attention, then another 3x3 convolution."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: a plain 3x3 branch and a PAConv branch, fused by 1x1."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        half = nf // 2
        self.conv1_a = nn.Conv2d(nf, half, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, half, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, bias=False))
        self.PAConv = PAConv(half)
        self.conv3 = nn.Conv2d(2 * half, nf, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = _lrelu(self.k1(_lrelu(self.conv1_a(x))))
        b = _lrelu(self.PAConv(_lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


def add_pa_reconstruction(net: nn.Module, nf: int, unf: int, out_nc: int, scale: int) -> None:
    """PAN's reconstruction modules on `net` under the official key names (upconv1, att1, HRconv1, their x4
    second stage, conv_last): nearest upsampling, pixel attention, and a conv to the image."""
    net.upconv1 = nn.Conv2d(nf, unf, 3, padding=1)
    net.att1 = PA(unf)
    net.HRconv1 = nn.Conv2d(unf, unf, 3, padding=1)
    if scale == 4:
        net.upconv2 = nn.Conv2d(unf, unf, 3, padding=1)
        net.att2 = PA(unf)
        net.HRconv2 = nn.Conv2d(unf, unf, 3, padding=1)
    net.conv_last = nn.Conv2d(unf, out_nc, 3, padding=1)


def pa_reconstruct(net: nn.Module, fea: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The image from the trunk's features `fea` through `add_pa_reconstruction`'s modules, plus `x`
    upsampled bilinearly (`net.scale` times)."""
    stages = [(net.upconv1, net.att1, net.HRconv1)]
    if net.scale == 4:
        stages.append((net.upconv2, net.att2, net.HRconv2))
    step = 2 if net.scale == 4 else net.scale
    for upconv, att, hrconv in stages:
        fea = upconv(F.interpolate(fea, scale_factor=step, mode="nearest"))
        fea = _lrelu(hrconv(_lrelu(att(fea))))
    base = F.interpolate(x, scale_factor=net.scale, mode="bilinear", align_corners=False)
    return net.conv_last(fea) + base


class PAN(nn.Module):
    """PAN with `nb` SCPA blocks of `nf` channels and a nearest-upsampling + PA reconstruction of `unf`."""

    def __init__(
        self, in_nc: int = 3, out_nc: int = 3, nf: int = 40, unf: int = 24, nb: int = 16, scale: int = 4
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"PAN supports scales 2, 3 and 4, not {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.SCPA_trunk = nn.Sequential(*(SCPA(nf) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        add_pa_reconstruction(self, nf, unf, out_nc, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        return pa_reconstruct(self, fea, x)


def detect(state_dict: StateDict) -> bool:
    return "SCPA_trunk.0.PAConv.k2.weight" in state_dict and "conv_first.weight" in state_dict


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    nf, in_nc = shape(state_dict, "conv_first.weight")[:2]
    unf = shape(state_dict, "upconv1.weight")[0]
    out_nc = shape(state_dict, "conv_last.weight")[0]
    nb = count_prefixed(state_dict, "SCPA_trunk.")
    if "upconv2.weight" in state_dict:
        if scale not in (None, 4):
            raise MissingHyperParameter(f"these PAN weights are x4, not x{scale}")
        scale = 4
    elif scale is None:
        raise MissingHyperParameter(
            "PAN x2 and x3 weights are identical in shape; give the scale (--scale 2 or --scale 3)"
        )
    elif scale not in (2, 3):
        raise MissingHyperParameter(f"these PAN weights are x2 or x3, not x{scale}")
    return {"in_nc": in_nc, "out_nc": out_nc, "nf": nf, "unf": unf, "nb": nb, "scale": scale}


FAMILY = Family(
    name="PAN",
    build=PAN,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=1,
    scales=(2, 3, 4),
    supports_fp16=True,
    supports_bf16=True,
    channels_last=True,
    presets={"PAN": {"nf": 40, "unf": 24, "nb": 16}},
)
