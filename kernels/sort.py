"""`sort`: torch.sort for the value sorts of the histogram-attention networks (Histoformer, HOGformer), by a
compiled CPU kernel (sort_cpu.cpp) in float32 inference: 1.2-1.3x torch.sort on rows of 128 and more.

Same values and indices as torch.sort (ascending, NaN last, -0.0 equal to +0.0, and equal values in the
order torch's unstable std::sort leaves them), so the networks' outputs do not change by a bit. torch.sort
runs instead when gradients are needed, while exporting or tracing, off the CPU, for other dtypes, on rows
shorter than 64 or expanded (stride 0, where torch.sort does not sort), and when the kernel cannot be built.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from kernels.backends.fused_cpu_build import entry_point
from kernels.tracing import is_graph_capture

SOURCE = Path(__file__).with_name("sort_cpu.cpp")
MIN_LENGTH = 64  # shorter rows: torch.sort, as fast as the kernel there (benchmarks/histogram_ops.py)
MAX_LENGTH = 2**32 - 1  # indices travel in the low 32 bits of the kernel's sort words


def sort(x: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """(values, indices) of `x` sorted ascending along `dim`, exactly as `torch.sort(x, dim)`."""
    if not _kernel_applies(x, dim):
        return torch.sort(x, dim)
    function = _library()
    if function is None:
        return torch.sort(x, dim)
    rows = x.movedim(dim, -1).contiguous()
    values = torch.empty_like(rows)
    indices = torch.empty(rows.shape, dtype=torch.int64)
    with torch.profiler.record_function("kernels::sort_cpu"):
        count, length = rows.numel() // rows.shape[-1], rows.shape[-1]
        status = function(rows.data_ptr(), values.data_ptr(), indices.data_ptr(), count, length)
    if status != 0:
        raise RuntimeError(f"the CPU sort kernel refused a tensor of shape {tuple(x.shape)}")
    return values.movedim(-1, dim), indices.movedim(-1, dim)


def _kernel_applies(x: Tensor, dim: int) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() > 0
        and MIN_LENGTH <= x.shape[dim] <= MAX_LENGTH
        and x.stride(dim) != 0  # torch returns 0, 1, 2, ... along an expanded dim, unsorted
        and x.numel() > 0
        and not (x.requires_grad and torch.is_grad_enabled())
        and not is_graph_capture()
    )


@functools.cache
def _library() -> Callable[..., int] | None:
    """The kernel's entry point, or None when it cannot be built or loaded (a warning says so, once)."""
    argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 2
    return entry_point(SOURCE, "the CPU sort kernel", "torch.sort", "sr_sort_rows_f32", argtypes)
