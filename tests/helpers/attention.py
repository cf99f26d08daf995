"""Records the `window_attention` calls a network makes, under each attention backend, for the tests that
check every attention of a family goes through `kernels` with the shapes its official code has."""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

import kernels


class Call(NamedTuple):
    q: tuple[int, ...]
    k: tuple[int, ...]
    bias: tuple[int, ...] | None
    mask: tuple[int, ...] | None
    mask_dtype: torch.dtype | None


def trace_attention(
    monkeypatch: pytest.MonkeyPatch, owner: Any, model: nn.Module, x: torch.Tensor
) -> tuple[list[Call], dict[str, torch.Tensor]]:
    """Run `model(x)` under no_grad with every CPU inference backend (reference, SDPA and, where it
    builds, the fused CPU kernel), with `owner.window_attention` (the `kernels` module or a family module
    that imported the op) recording each call. Returns the calls, the same under every backend, and each
    backend's output."""
    real = owner.window_attention
    calls: list[Call] = []

    def recording(q, k, v, **kwargs):
        bias, mask = kwargs.get("bias"), kwargs.get("mask")
        calls.append(Call(tuple(q.shape), tuple(k.shape), None if bias is None else tuple(bias.shape),
                          None if mask is None else tuple(mask.shape), None if mask is None else mask.dtype))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(owner, "window_attention", recording)
    runs, outputs = {}, {}
    like_q = torch.empty(1, 1, 1, 8, dtype=x.dtype, device=x.device)
    backends = [name for name in ("reference", "sdpa", "fused_cpu") if kernels.why_not(name, like_q) is None]
    for backend in backends:
        monkeypatch.setenv(kernels.ENV_VAR, backend)
        calls.clear()
        with torch.no_grad():
            outputs[backend] = model(x)
        runs[backend] = list(calls)
    assert all(run == runs["reference"] for run in runs.values())
    return runs["reference"], outputs


def backends_agree(outputs: dict[str, torch.Tensor], tolerance: float = 1e-5) -> bool:
    """Every backend's output within `tolerance` of the reference backend's."""
    expected = outputs["reference"]
    return all((out - expected).abs().max().item() <= tolerance for out in outputs.values())
