"""Functional transcription of the official CFSR forward (float64 default), off a state dict, in either form.

Written from Aitical/CFSR `basicsr/archs/cfsr_arch.py`: the released (merged) form at ec9b237 (`CFSR`,
`lkb_reparam`, merged `mlp.pos`) and the training (unmerged) form at a13d41c (`Conv2Former_AllEdge`:
`ReparamLargeKernelConv.forward` with `lkb_origin`, `small_conv` and the three edge convolutions, and
`MLP.forward` with `merge_kernel` False), each branch a separate convolution as there; the edge masks are
built as the official constructors fill them. No `archs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def official_masks(channels: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The official `mask_sobel_x`, `mask_sobel_y`, `mask_laplacian` (channels, 1, 3, 3), filled as there."""
    sobel_x = torch.zeros(channels, 1, 3, 3, dtype=dtype)
    sobel_y = torch.zeros(channels, 1, 3, 3, dtype=dtype)
    laplacian = torch.zeros(channels, 1, 3, 3, dtype=dtype)
    for i in range(channels):
        sobel_x[i, 0, 0, 1] = 1.0
        sobel_x[i, 0, 1, 0] = 2.0
        sobel_x[i, 0, 2, 0] = 1.0
        sobel_x[i, 0, 0, 2] = -1.0
        sobel_x[i, 0, 1, 2] = -2.0
        sobel_x[i, 0, 2, 2] = -1.0
        sobel_y[i, 0, 0, 0] = 1.0
        sobel_y[i, 0, 0, 1] = 2.0
        sobel_y[i, 0, 0, 2] = 1.0
        sobel_y[i, 0, 2, 0] = -1.0
        sobel_y[i, 0, 2, 1] = -2.0
        sobel_y[i, 0, 2, 2] = -1.0
        laplacian[i, 0, 0, 0] = 1.0
        laplacian[i, 0, 1, 0] = 1.0
        laplacian[i, 0, 1, 2] = 1.0
        laplacian[i, 0, 2, 1] = 1.0
        laplacian[i, 0, 1, 1] = -4.0
    return {"sobel_x": sobel_x, "sobel_y": sobel_y, "laplacian": laplacian}


def _conv(sd: Weights, name: str, x: torch.Tensor, padding: int = 0, groups: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=padding, groups=groups)


def _layer_norm(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    """The official channels_first LayerNorm, eps 1e-6."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + 1e-6)
    return sd[f"{name}.weight"][:, None, None] * x + sd[f"{name}.bias"][:, None, None]


def _edges(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    """The three official edge convolutions, summed: F.conv2d(x, scale * mask, bias, padding=1, groups=C)."""
    masks = official_masks(x.shape[1], x.dtype)
    out = 0
    for edge in ("sobel_x", "sobel_y", "laplacian"):
        weight = sd[f"{name}.scale_{edge}"] * masks[edge]
        out = out + F.conv2d(x, weight, sd[f"{name}.{edge}_bias"], stride=1, padding=1, groups=x.shape[1])
    return out


def _large_kernel(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    channels = x.shape[1]
    if f"{name}.lkb_reparam.weight" in sd:
        size = sd[f"{name}.lkb_reparam.weight"].shape[-1]
        return _conv(sd, f"{name}.lkb_reparam", x, padding=size // 2, groups=channels)
    size = sd[f"{name}.lkb_origin.weight"].shape[-1]
    out = _conv(sd, f"{name}.lkb_origin", x, padding=size // 2, groups=channels)
    if f"{name}.small_conv.weight" in sd:
        small = sd[f"{name}.small_conv.weight"].shape[-1]
        out = out + _conv(sd, f"{name}.small_conv", x, padding=small // 2, groups=channels)
        out = out + _edges(sd, name, x)
    return out


def _conv_mod(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = _layer_norm(sd, f"{name}.norm", x)
    a = _large_kernel(sd, f"{name}.a.2", F.gelu(_conv(sd, f"{name}.a.0", x)))
    return _conv(sd, f"{name}.proj", a * _conv(sd, f"{name}.v", x))


def _mlp(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(_conv(sd, f"{name}.fc1", _layer_norm(sd, f"{name}.norm", x)))
    out = _conv(sd, f"{name}.pos", x, padding=1, groups=x.shape[1])
    if f"{name}.scale_sobel_x" in sd:  # unmerged (merge_kernel False)
        out = out + _edges(sd, name, x)
    x = x + F.gelu(out)
    return _conv(sd, f"{name}.fc2", x)


def _count(sd: Weights, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


def cfsr(
    sd: Weights, x: torch.Tensor, img_range: float = 1.0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The official eval-mode forward in `dtype`; the upsampler and scale come from the keys and shapes."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    x = x.to(dtype)
    in_chans = x.shape[1]
    mean = (
        torch.tensor(RGB_MEAN, dtype=dtype).view(1, 3, 1, 1)
        if in_chans == 3
        else torch.zeros(1, 1, 1, 1, dtype=dtype)
    )
    x = (x - mean) * img_range
    first = _conv(sd, "conv_first", x, padding=1)
    body = first
    for i in range(_count(sd, "layers.")):
        for j in range(_count(sd, f"layers.{i}.blocks.")):
            p = f"layers.{i}.blocks.{j}"
            body = body + sd[f"{p}.layer_scale_1"].unsqueeze(-1).unsqueeze(-1) * _conv_mod(
                sd, f"{p}.attn", body
            )
            body = body + sd[f"{p}.layer_scale_2"].unsqueeze(-1).unsqueeze(-1) * _mlp(sd, f"{p}.mlp", body)
        body = _conv(sd, f"layers.{i}.conv", body) + body
    res = _conv(sd, "conv_after_body", _layer_norm(sd, "norm", body), padding=1) + first
    if "upsample.0.weight" in sd:
        scale = int(round((sd["upsample.0.weight"].shape[0] / in_chans) ** 0.5))
        x = F.pixel_shuffle(_conv(sd, "upsample.0", res, padding=1), scale)
    else:
        x = x + _conv(sd, "conv_last", res, padding=1)
    return x / img_range + mean
