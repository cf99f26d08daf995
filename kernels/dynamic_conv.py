"""`dynamic_depthwise_conv`: DLGSANet's dynamic depth-wise convolution (the official IDynamic op, a CuPy CUDA
kernel there), as tensor ops that run anywhere and export, and by a compiled CPU kernel (dynamic_conv_cpu.cpp,
built and cached like the attention kernel) in float32 inference: one pass over the map instead of k².

The kernel adds the same k² products in the same order as the tensor ops: equal to the bit in whole blocks
of 16 outputs where measured (DLGSANet's 128- and 64-wide maps); a row's last, partial block is summed one
output at a time and may differ by rounding (1.4e-6 measured). The tensor ops run when gradients are needed,
while exporting or tracing, off the CPU, for other dtypes or memory layouts, and when the kernel cannot be
built.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels.backends.fused_cpu_build import entry_point
from kernels.tracing import is_graph_capture

SOURCE = Path(__file__).with_name("dynamic_conv_cpu.cpp")


def dynamic_depthwise_conv(x: Tensor, weight: Tensor) -> Tensor:
    """Stride 1, dilation 1, zero padding (k-1)/2, odd k: x (B, C, H, W), per-pixel filters weight
    (B, G, k, k, H, W) shared by the C/G consecutive channels of each group g:
    out[b, c, y, x] = Σ_{i,j} weight[b, c // (C/G), i, j, y, x] · x_pad[b, c, y + i, x + j]."""
    if _kernel_applies(x, weight):
        function = _library()
        if function is not None:
            return _by_kernel(function, x, weight)
    return _by_tensor_ops(x, weight)


def _by_tensor_ops(x: Tensor, weight: Tensor) -> Tensor:
    b, c, h, w = x.shape
    groups, k = weight.shape[1], weight.shape[2]
    pad = (k - 1) // 2
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(b, groups, c // groups, h + 2 * pad, w + 2 * pad)
    out = torch.zeros_like(padded[..., :h, :w])
    for i in range(k):
        for j in range(k):
            out.addcmul_(padded[..., i : i + h, j : j + w], weight[:, :, i, j].unsqueeze(2))
    return out.reshape(b, c, h, w)


def _by_kernel(function: Callable[..., int], x: Tensor, weight: Tensor) -> Tensor:
    b, c, h, w = x.shape
    groups, k = weight.shape[1], weight.shape[2]
    weight = weight.contiguous()  # x is (`_kernel_applies`)
    out = torch.empty_like(x)
    with torch.profiler.record_function("kernels::dynamic_dwconv_cpu"):
        status = function(x.data_ptr(), weight.data_ptr(), out.data_ptr(), b, c, groups, k, h, w)
    if status != 0:
        shapes = f"x {tuple(x.shape)}, weight {tuple(weight.shape)}"
        raise RuntimeError(f"the dynamic convolution kernel refused {shapes}")
    return out


def _kernel_applies(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 4
        and weight.dim() == 6
        and x.numel() > 0
        and x.is_contiguous()  # NCHW: the kernel walks rows of one channel
        and not ((x.requires_grad or weight.requires_grad) and torch.is_grad_enabled())
        and not is_graph_capture()
    )


@functools.cache
def _library() -> Callable[..., int] | None:
    """The kernel's entry point, or None when it cannot be built or loaded (a warning says so, once)."""
    argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6
    return entry_point(SOURCE, "the dynamic convolution kernel", "tensor ops", "sr_dynamic_dwconv_f32",
                       argtypes)
