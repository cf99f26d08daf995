"""The window-attention op every attention network calls: checks its inputs, picks a backend, runs it."""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.backends import get_backend
from kernels.checks import choose_backend
from kernels.tracing import is_exporting
from kernels.validation import check_inputs


def window_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> Tensor:
    """softmax(scale·q·kᵀ + bias + mask)·v over windows; differentiable in q, k, v, bias and mask.

    q: (B·nW, h, Nq, d); k, v: (B·nW, h, Nk, d); bias: (h, Nq, Nk), shared by all windows; mask: (nW, Nq, Nk)
    additive, repeating over the batch (image b's window i is row b·nW + i, as `window_partition` orders
    them). All inputs share one dtype and device. scale defaults to d^-0.5. Returns (B·nW, h, Nq, d).

    backend: "auto" (see `kernels.checks`; the SR_ATTENTION_BACKEND environment variable overrides it),
    "reference", "sdpa" or "triton". A forced backend that cannot run raises BackendUnavailable with the
    reason. During ONNX export and tracing "auto" runs the reference math, which every exporter handles.
    """
    if not is_exporting():  # traced shapes are not Python ints: checking them would bake them in
        check_inputs(q, k, v, bias, mask)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, k, v, bias, mask)
    )
    name = choose_backend(backend, q, needs_grad=needs_grad, additive=bias is not None or mask is not None)
    return get_backend(name)(q, k, v, bias, mask, scale)
