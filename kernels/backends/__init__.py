"""The window-attention backends by name; each takes (q, k, v, bias, mask, scale) and returns the output.

The Triton backend is imported only when asked for, so `import kernels` never imports triton; the fused CPU
backend builds its library on first use, not at import.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from kernels.backends import fused_cpu, reference, sdpa

Backend = Callable[[Tensor, Tensor, Tensor, Tensor | None, Tensor | None, float], Tensor]

NAMES = ("reference", "sdpa", "fused_cpu", "triton")


def get_backend(name: str) -> Backend:
    """The attention function of backend `name` (one of NAMES)."""
    if name == "reference":
        return reference.attention
    if name == "sdpa":
        return sdpa.attention
    if name == "fused_cpu":
        return fused_cpu.attention
    if name == "triton":
        from kernels.backends import triton

        return triton.attention
    raise ValueError(f"unknown window-attention backend {name!r}; choose from auto, {', '.join(NAMES)}")
