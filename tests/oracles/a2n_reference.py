"""Functional transcription of the official A2N forward (float64) off a state dict, on its 0..255 range.

Written from haoyuc/A2N `code/model/aan.py` (class `AAN` and its `AAB`, `AttentionBranch`, `PA`), op by op in
the official order; the scale is an argument (the official `args.scale[0]`); no `archs` import.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]


def _conv(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    weight = sd[f"{name}.weight"]
    return F.conv2d(x, weight, sd.get(f"{name}.bias"), padding=(weight.shape[-1] - 1) // 2)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope=0.2)


def _pa(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    return torch.mul(x, torch.sigmoid(_conv(sd, f"{name}.conv", x)))


def _attention_branch(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    y = torch.sigmoid(_conv(sd, f"{name}.k2", _lrelu(_conv(sd, f"{name}.k1", x))))
    return _conv(sd, f"{name}.k4", torch.mul(_conv(sd, f"{name}.k3", x), y))


def _aab(sd: Weights, name: str, x: torch.Tensor, t: float = 30.0) -> torch.Tensor:
    residual = x
    a, b = x.shape[:2]
    x = _lrelu(_conv(sd, f"{name}.conv_first", x))
    y = F.adaptive_avg_pool2d(x, 1).view(a, b)
    y = F.linear(F.relu(F.linear(y, sd[f"{name}.ADM.0.weight"])), sd[f"{name}.ADM.2.weight"])
    ax = F.softmax(y / t, dim=1)
    attention = _attention_branch(sd, f"{name}.attention", x)
    non_attention = _conv(sd, f"{name}.non_attention", x)
    x = _lrelu(attention * ax[:, 0].view(a, 1, 1, 1) + non_attention * ax[:, 1].view(a, 1, 1, 1))
    return _conv(sd, f"{name}.conv_last", x) + residual


def a2n(state_dict: Weights, x: torch.Tensor, scale: int) -> torch.Tensor:
    """The official `AAN.forward` of `x` (N×C×H×W, 0..255) in float64; returns 0..255 values, unclamped."""
    sd = {k: v.double() for k, v in state_dict.items()}
    x = x.double()
    nb = len({k.split(".")[1] for k in sd if k.startswith("AAB_trunk.")})
    fea = _conv(sd, "conv_first", x)
    trunk = fea
    for i in range(nb):
        trunk = _aab(sd, f"AAB_trunk.{i}", trunk)
    fea = fea + _conv(sd, "trunk_conv", trunk)
    if scale in (2, 3):
        fea = _conv(sd, "upconv1", F.interpolate(fea, scale_factor=scale, mode="nearest"))
        fea = _lrelu(_pa(sd, "att1", fea))
        fea = _lrelu(_conv(sd, "HRconv1", fea))
    elif scale == 4:
        fea = _conv(sd, "upconv1", F.interpolate(fea, scale_factor=2, mode="nearest"))
        fea = _lrelu(_pa(sd, "att1", fea))
        fea = _lrelu(_conv(sd, "HRconv1", fea))
        fea = _conv(sd, "upconv2", F.interpolate(fea, scale_factor=2, mode="nearest"))
        fea = _lrelu(_pa(sd, "att2", fea))
        fea = _lrelu(_conv(sd, "HRconv2", fea))
    out = _conv(sd, "conv_last", fea)
    ilr = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    return out + ilr
