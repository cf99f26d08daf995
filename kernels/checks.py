"""Which window-attention backend can run on given inputs, why another cannot, and what `auto` picks.

`auto` (the default, overridden by the SR_ATTENTION_BACKEND environment variable) picks by device, dtype and
whether gradients are needed, from the CPU timings of benchmarks/window_attention.py (RESULTS.md):
- while exporting or tracing: `reference` (plain ops that every exporter handles);
- CUDA: `triton` when it can run (fused, any head dim up to 128), else `sdpa`; under `torch.compile`: `sdpa`;
- CPU inference with a bias or mask, fp32 or bf16: `fused_cpu` (our one-pass kernel, built on first use;
  fp32 2.5–6.3× and bf16 1.7–3.4× faster than `reference`, and faster than `sdpa` at every such shape),
  else `sdpa` when it cannot be built or under `torch.compile`;
- other CPU inference (CAMixer's plain attention, where SDPA's flash kernel is 1.2× and ours 1.0× the
  reference in fp32), and fp32 training without bias and mask: `sdpa`;
- other CPU training, and float64: `reference` (with a bias or mask SDPA's CPU backward is 1.1–7× slower,
  as a mask that needs a gradient takes its unfused path; its bf16 backward is slower throughout).
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import Tensor

from kernels.backends import NAMES, fused_cpu
from kernels.tracing import is_exporting

ENV_VAR = "SR_ATTENTION_BACKEND"
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TRITON_MAX_HEAD_DIM = 128


class BackendUnavailable(RuntimeError):
    """A window-attention backend was forced (argument or environment) but cannot run on these inputs."""


def why_not(backend: str, q: Tensor, *, needs_grad: bool = False) -> str | None:
    """None if `backend` can run on inputs like `q` (with gradients if `needs_grad`), else a sentence saying
    why it cannot."""
    if backend not in NAMES:
        return f"there is no backend {backend!r} (known: {', '.join(NAMES)})"
    if backend == "triton":
        return _why_not_triton(q)
    if backend == "fused_cpu":
        return fused_cpu.why_unavailable(q, needs_grad)
    return None


def available_backends(q: Tensor, *, needs_grad: bool = False) -> list[str]:
    """The backends that can run on inputs like `q` (with gradients if `needs_grad`)."""
    return [name for name in NAMES if why_not(name, q, needs_grad=needs_grad) is None]


def choose_backend(requested: str, q: Tensor, *, needs_grad: bool, additive: bool = True) -> str:
    """The backend to run: `requested` (or SR_ATTENTION_BACKEND when `requested` is "auto"), checked, or the
    automatic choice for a call that `needs_grad` and has a bias or mask (`additive`). Raises
    BackendUnavailable when a forced backend cannot run."""
    if requested == "auto":
        requested = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if requested == "auto":
        return _auto(q, needs_grad=needs_grad, additive=additive)
    if requested not in NAMES:
        raise ValueError(f"unknown window-attention backend {requested!r}; choose auto, {', '.join(NAMES)}")
    reason = why_not(requested, q, needs_grad=needs_grad)
    if reason is not None:
        raise BackendUnavailable(f"window-attention backend {requested!r} cannot run: {reason}")
    return requested


def _auto(q: Tensor, *, needs_grad: bool, additive: bool) -> str:
    if is_exporting():
        return "reference"
    if q.is_cuda:
        if torch.compiler.is_compiling():
            return "sdpa"
        return "triton" if _why_not_triton(q) is None else "sdpa"
    if q.dtype == torch.float64 or (needs_grad and (additive or q.dtype != torch.float32)):
        return "reference"
    if not additive or torch.compiler.is_compiling() or fused_cpu.why_unavailable(q, needs_grad) is not None:
        return "sdpa"
    return "fused_cpu"


def _why_not_triton(q: Tensor) -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton)"
    if is_exporting():
        return "a Triton kernel cannot be traced or exported; use reference or sdpa"
    if q.dtype not in TRITON_DTYPES:
        return f"dtype {q.dtype} is not supported (float16, bfloat16 or float32)"
    if q.shape[-1] > TRITON_MAX_HEAD_DIM:
        return f"head dim {q.shape[-1]} is larger than {TRITON_MAX_HEAD_DIM}"
    if _triton_interpreter_on():
        return None
    if not q.is_cuda:
        return (
            f"it needs CUDA tensors, got {q.device.type}; on CPU it runs only in the Triton interpreter "
            "(TRITON_INTERPRET=1 set before triton is imported), which is meant for tests"
        )
    if q.dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return f"this GPU ({torch.cuda.get_device_name(q.device)}) has no bfloat16 support"
    return None


def _triton_interpreter_on() -> bool:
    from kernels.backends import triton_kernels

    return triton_kernels.INTERPRETED
