"""Fused CPU backend: window attention in one pass per window (fused_cpu.cpp), forward only; fp32 or
bfloat16 inputs, fp32 arithmetic.

The library is built on first use (fused_cpu_build) and called through ctypes, which releases the GIL; it
parallelises over windows on torch's thread pool. q, k and v are read through their strides, so the strided
views of a packed qkv projection are not copied; the output is laid out (B·nW, Nq, h, d) and returned as its
(B·nW, h, Nq, d) view, so the networks' `out.transpose(1, 2).reshape(B·nW, Nq, h·d)` copies nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import torch
from torch import Tensor

from kernels.backends import reference
from kernels.backends.fused_cpu_build import SOURCE, load

MAX_HEAD_DIM = 128
DTYPES = (torch.float32, torch.bfloat16)
_POINTER, _INT = ctypes.c_void_p, ctypes.c_int64
_ENTRY_POINTS = {torch.float32: "sr_window_attention_f32", torch.bfloat16: "sr_window_attention_bf16"}


def why_unavailable(q: Tensor, needs_grad: bool) -> str | None:
    """None if the fused CPU kernel can run on inputs like `q`, else a sentence saying why not."""
    if q.device.type != "cpu":
        return f"it runs on CPU tensors, got {q.device.type}"
    if q.dtype not in DTYPES:
        return f"dtype {q.dtype} is not supported (float32 or bfloat16)"
    if q.shape[-1] > MAX_HEAD_DIM:
        return f"head dim {q.shape[-1]} is larger than {MAX_HEAD_DIM}"
    if needs_grad:
        return "it computes the forward pass only (no gradients)"
    return _library()[1]


def attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float
) -> Tensor:
    """softmax(scale·q·kᵀ + bias + mask)·v by the fused kernel; same contract as the reference backend."""
    if q.numel() == 0 or k.shape[2] == 0:
        return reference.attention(q, k, v, bias, mask, scale)
    functions, reason = _library()
    if functions is None:
        raise RuntimeError(f"the fused CPU window-attention kernel is unavailable: {reason}")
    function = functions[q.dtype]
    windows, heads, n_q, dim = q.shape
    out = torch.empty(windows, n_q, heads, dim, dtype=q.dtype).transpose(1, 2)
    bias = None if bias is None else bias.float().contiguous()  # small (h, Nq, Nk) and (nW, Nq, Nk)
    mask = None if mask is None else mask.float().contiguous()
    with torch.profiler.record_function("kernels::fused_cpu_window_attention"):  # named in profiles
        status = function(
            q.data_ptr(), _strides(q), k.data_ptr(), _strides(k), v.data_ptr(), _strides(v),
            None if bias is None else bias.data_ptr(), None if mask is None else mask.data_ptr(),
            0 if mask is None else mask.shape[0], out.data_ptr(), _strides(out),
            windows, heads, n_q, k.shape[2], dim, scale,
        )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"the fused CPU window-attention kernel refused q of shape {tuple(q.shape)}")
    return out


def _strides(t: Tensor) -> ctypes.Array:
    return (_INT * 4)(*t.stride())


@functools.cache
def _library() -> tuple[dict[torch.dtype, Callable[..., int]] | None, str | None]:
    """The kernel's entry point per dtype and None, or None and why the library could not be built or
    loaded (decided once a process, with a warning saying so then)."""
    library, reason = load(SOURCE, "the fused CPU window attention", "SDPA")
    if library is None:
        return None, reason
    functions = {}
    for dtype, name in _ENTRY_POINTS.items():
        function = getattr(library, name)
        function.argtypes = [
            _POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _POINTER, _INT,
            _POINTER, _POINTER, _INT, _INT, _INT, _INT, _INT, ctypes.c_float,
        ]  # fmt: skip
        function.restype = ctypes.c_int
        functions[dtype] = function
    return functions, None
