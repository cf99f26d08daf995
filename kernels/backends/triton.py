"""Triton backend: the fused window-attention kernels behind an autograd function (forward and backward).

On CUDA tensors the kernels are compiled; when TRITON_INTERPRET=1 was set before triton was imported they run
in the Triton interpreter (CPU tensors too), which is how the tests check them on machines without a GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels.backends import triton_kernels

BLOCK = 64
NUM_WARPS = 4
_TL_DTYPES = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float
) -> Tensor:
    """softmax(scale·q·kᵀ + bias + mask)·v by the fused kernels; same contract as the reference backend."""
    return _WindowAttention.apply(q, k, v, bias, mask, scale)


class _WindowAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, mask, scale):
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        lse = torch.empty(q.shape[:3], dtype=torch.float32, device=q.device)
        config = _Config(q, k, bias, mask)
        grid = (triton.cdiv(q.shape[2], config.block_m), q.shape[0] * q.shape[1])
        triton_kernels.attention_forward[grid](
            q, k, v, config.bias, config.mask, out, lse,
            *q.stride(), *k.stride(), *v.stride(), *config.bias_strides, *config.mask_strides,
            q.shape[1], config.mask_windows, q.shape[2], k.shape[2], q.shape[3], scale,
            **config.constants, num_warps=NUM_WARPS,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, bias, mask, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, bias, mask, out, lse = ctx.saved_tensors
        config = _Config(q, k, bias, mask)
        needs_dscores = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
        dk = torch.empty(k.shape, dtype=k.dtype, device=k.device)
        dv = torch.empty(v.shape, dtype=v.dtype, device=v.device)
        shape = (*q.shape[:3], k.shape[2]) if needs_dscores else (1,)
        dscores = torch.empty(shape, dtype=torch.float32, device=q.device)
        triton_kernels.attention_backward[(q.shape[0] * q.shape[1],)](
            q, k, v, config.bias, config.mask, out, dout.contiguous(), lse, dq, dk, dv, dscores,
            *q.stride(), *k.stride(), *v.stride(), *config.bias_strides, *config.mask_strides,
            q.shape[1], config.mask_windows, q.shape[2], k.shape[2], q.shape[3], ctx.scale,
            STORE_DSCORES=needs_dscores, **config.constants, num_warps=NUM_WARPS,
        )  # fmt: skip
        dbias = dscores.sum(0).to(bias.dtype) if ctx.needs_input_grad[3] else None
        dmask = None
        if ctx.needs_input_grad[4]:
            per_image = dscores.view(-1, mask.shape[0], *dscores.shape[1:])
            dmask = per_image.sum((0, 2)).to(mask.dtype)
        return dq.to(q.dtype), dk, dv, dbias, dmask, None


class _Config:
    """Launch arguments shared by the forward and backward kernels: block sizes, the optional bias and mask
    (a dummy pointer and zero strides when absent) and the compile-time flags."""

    def __init__(self, q: Tensor, k: Tensor, bias: Tensor | None, mask: Tensor | None) -> None:
        self.block_m = _block(q.shape[2])
        self.bias = q if bias is None else bias
        self.bias_strides = (0, 0, 0) if bias is None else bias.stride()
        self.mask = q if mask is None else mask
        self.mask_strides = (0, 0, 0) if mask is None else mask.stride()
        self.mask_windows = 1 if mask is None else mask.shape[0]
        self.constants = {
            "HAS_BIAS": bias is not None,
            "HAS_MASK": mask is not None,
            "PRECISION": "ieee" if q.dtype == torch.float32 else "tf32",
            "OPERAND": tl.float32 if triton_kernels.INTERPRETED else _TL_DTYPES[q.dtype],
            "BLOCK_M": self.block_m,
            "BLOCK_N": _block(k.shape[2]),
            "BLOCK_D": max(16, triton.next_power_of_2(q.shape[3])),
        }


def _block(tokens: int) -> int:
    return max(16, min(BLOCK, triton.next_power_of_2(tokens)))
