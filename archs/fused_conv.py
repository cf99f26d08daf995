"""Convolutions with the next pointwise op (GELU, a residual add, a gating product) fused in by oneDNN, for
CPU inference: one pass over the output instead of two, and no temporary. Networks keep their plain path for
training, export, autocast and other devices; `fusable` says which one a call takes."""

from __future__ import annotations

import torch
from torch import nn

from kernels.tracing import is_graph_capture

_MKLDNN = getattr(torch.ops, "mkldnn", None)


def fusable(x: torch.Tensor) -> bool:
    """True where the fused ops apply: an fp32 CPU tensor, no autograd, no autocast, no export or compile,
    and a torch built with oneDNN's fused convolutions (torch.ops.mkldnn._convolution_pointwise)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.is_available()
        and hasattr(_MKLDNN, "_convolution_pointwise_")
        and not is_graph_capture()
    )


def _geometry(conv: nn.Conv2d, weight: torch.Tensor | None) -> tuple:
    """Padding, stride, dilation and groups of `conv`, or of its depth-wise filters `weight` (a slice)."""
    if isinstance(conv.padding, str):
        raise ValueError(f"fused convolutions take integer padding, not {conv.padding!r}")
    if weight is None:
        return conv.padding, conv.stride, conv.dilation, conv.groups
    if conv.groups != conv.in_channels or conv.out_channels != conv.in_channels:
        raise ValueError("a weight slice stands for part of a depth-wise convolution only")
    return conv.padding, conv.stride, conv.dilation, weight.shape[0]


def conv_gelu(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """GELU (exact, erf) of `conv(x)`. `weight`: a slice of a depth-wise conv's filters, run over as many
    channels of `x` without bias (a depth-wise convolution over part of the channels)."""
    geometry = _geometry(conv, weight)
    bias = conv.bias if weight is None else None
    weight = conv.weight if weight is None else weight
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *geometry, "gelu", [], "none")


def conv_then(
    conv: nn.Conv2d,
    x: torch.Tensor,
    op: str,
    other: torch.Tensor,
    *,
    scale: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    into_other: bool = False,
) -> torch.Tensor:
    """`conv(x) + other` (op "add") or `conv(x) * other` (op "mul"), `other` shaped like the output. With
    `scale` (one value per output channel): `scale · conv(x)` before the op, folded into weight and bias.
    `weight` as in `conv_gelu`. `into_other` (op "add" only): the result overwrites `other` (no new tensor),
    which the caller must own and which must not be `x`."""
    geometry = _geometry(conv, weight)
    bias = conv.bias if weight is None else None
    weight = conv.weight if weight is None else weight
    if scale is not None:
        weight = weight * scale[:, None, None, None]
        bias = bias * scale if bias is not None else None
    args = (weight, bias, *geometry, op, None, None, [], None)
    if into_other:
        return torch.ops.mkldnn._convolution_pointwise_.binary(other, x, *args)
    return torch.ops.mkldnn._convolution_pointwise.binary(x, other, *args)
