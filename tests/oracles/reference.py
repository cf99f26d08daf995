"""Functional float64 transcriptions of RCAN (official and BasicSR layouts) and HAN, read off a state dict.

Written from the authors' and BasicSR's forward passes, step by step, without `archs`: each layer is an
explicit functional call on the named tensors. LAM and CSAM are NumPy transcriptions of the equations.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)
Weights = dict[str, torch.Tensor]


def _conv(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    weight = sd[f"{name}.weight"].double()
    return F.conv2d(x, weight, sd[f"{name}.bias"].double(), padding=weight.shape[-1] // 2)


def _channel_attention(sd: Weights, first: str, second: str, x: torch.Tensor) -> torch.Tensor:
    pooled = x.mean(dim=(2, 3), keepdim=True)
    return x * torch.sigmoid(_conv(sd, second, torch.relu(_conv(sd, first, pooled))))


def _upsample(sd: Weights, prefix: str, x: torch.Tensor) -> torch.Tensor:
    index = 0
    while f"{prefix}.{index}.weight" in sd:
        out_channels, in_channels = sd[f"{prefix}.{index}.weight"].shape[:2]
        x = F.pixel_shuffle(_conv(sd, f"{prefix}.{index}", x), math.isqrt(out_channels // in_channels))
        index += 2
    return x


def _count(sd: Weights, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def _official_group(sd: Weights, g: int, x: torch.Tensor) -> torch.Tensor:
    blocks = _count(sd, f"body.{g}.body.") - 1
    res = x
    for b in range(blocks):
        p = f"body.{g}.body.{b}.body"
        t = _conv(sd, f"{p}.2", torch.relu(_conv(sd, f"{p}.0", res)))
        res = res + _channel_attention(sd, f"{p}.3.conv_du.0", f"{p}.3.conv_du.2", t)
    return _conv(sd, f"body.{g}.body.{blocks}", res) + x


def rcan_official(sd: Weights, x: torch.Tensor) -> torch.Tensor:
    """The authors' RCAN: x in [0, 1] is fed as 255 x; output divided by 255."""
    x = _conv(sd, "head.0", _conv(sd, "sub_mean", x.double() * 255))
    groups = _count(sd, "body.") - 1
    res = x
    for g in range(groups):
        res = _official_group(sd, g, res)
    res = _conv(sd, f"body.{groups}", res) + x
    return _conv(sd, "add_mean", _conv(sd, "tail.1", _upsample(sd, "tail.0", res))) / 255


def rcan_basicsr(sd: Weights, x: torch.Tensor) -> torch.Tensor:
    """BasicSR's RCAN (img_range 255, DIV2K mean, res_scale 1): no mean-shift weights, arithmetic instead."""
    mean = torch.tensor(DIV2K_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    x = _conv(sd, "conv_first", (x.double() - mean) * 255)
    res = x
    for g in range(_count(sd, "body.")):
        group_in = res
        for b in range(_count(sd, f"body.{g}.residual_group.")):
            p = f"body.{g}.residual_group.{b}.rcab"
            t = _conv(sd, f"{p}.2", torch.relu(_conv(sd, f"{p}.0", res)))
            res = res + _channel_attention(sd, f"{p}.3.attention.1", f"{p}.3.attention.3", t)
        res = _conv(sd, f"body.{g}.conv", res) + group_in
    res = _conv(sd, "conv_after_body", res) + x
    return _conv(sd, "conv_last", _upsample(sd, "upsample", res)) / 255 + mean


def layer_attention_np(x: np.ndarray, gamma: float) -> np.ndarray:
    """HAN's LAM: w = softmax_j(max_k E_ik - E_ij), E = F F^T over flattened layers; out = gamma w F + F."""
    b, n, c, h, w = x.shape
    out = np.empty_like(x, dtype=np.float64)
    for i in range(b):
        f = x[i].reshape(n, -1).astype(np.float64)
        energy = f @ f.T
        logits = energy.max(axis=1, keepdims=True) - energy
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        out[i] = (gamma * (weights @ f) + f).reshape(n, c, h, w)
    return out.reshape(b, n * c, h, w)


def csa_np(x: np.ndarray, kernel: np.ndarray, bias: float, gamma: float) -> np.ndarray:
    """HAN eq. (CSAM): s = sigmoid(3-D conv over (C, H, W), zero padding 1); out = x * gamma * s + x."""
    x = x.astype(np.float64)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1)))
    _, c, h, w = x.shape
    conv = np.full_like(x, bias)
    for dc in range(3):
        for dh in range(3):
            for dw in range(3):
                conv += kernel[dc, dh, dw] * padded[:, dc:dc + c, dh:dh + h, dw:dw + w]
    return x * gamma * (1 / (1 + np.exp(-conv))) + x


def han_official(sd: Weights, x: torch.Tensor) -> torch.Tensor:
    """The authors' HAN forward: body outputs concatenated newest first, LAM, CSAM, `last`, skip, tail."""
    x = _conv(sd, "head.0", _conv(sd, "sub_mean", x.double() * 255))
    groups = _count(sd, "body.") - 1
    res, stacked = x, None
    for index in range(groups + 1):
        res = _official_group(sd, index, res) if index < groups else _conv(sd, f"body.{groups}", res)
        stacked = res.unsqueeze(1) if stacked is None else torch.cat([res.unsqueeze(1), stacked], dim=1)
    lam = torch.from_numpy(layer_attention_np(stacked.numpy(), float(sd["la.gamma"])))
    kernel = sd["csa.conv.weight"].double().numpy()[0, 0]
    csa = torch.from_numpy(csa_np(res.numpy(), kernel, float(sd["csa.conv.bias"]), float(sd["csa.gamma"])))
    res = _conv(sd, "last", torch.cat([csa, _conv(sd, "last_conv", lam)], dim=1)) + x
    return _conv(sd, "add_mean", _conv(sd, "tail.1", _upsample(sd, "tail.0", res))) / 255
