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
    """Run `model(x)` with the reference and the SDPA backend, with `owner.window_attention` (the `kernels`
    module or a family module that imported the op) recording each call. Returns the calls, the same under
    both backends, and the output of each backend."""
    real = owner.window_attention
    calls: list[Call] = []

    def recording(q, k, v, **kwargs):
        bias, mask = kwargs.get("bias"), kwargs.get("mask")
        calls.append(Call(tuple(q.shape), tuple(k.shape), None if bias is None else tuple(bias.shape),
                          None if mask is None else tuple(mask.shape), None if mask is None else mask.dtype))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(owner, "window_attention", recording)
    runs, outputs = {}, {}
    for backend in ("reference", "sdpa"):
        monkeypatch.setenv(kernels.ENV_VAR, backend)
        calls.clear()
        with torch.no_grad():
            outputs[backend] = model(x)
        runs[backend] = list(calls)
    assert runs["reference"] == runs["sdpa"]
    return runs["sdpa"], outputs


def backends_agree(outputs: dict[str, torch.Tensor], tolerance: float = 1e-5) -> bool:
    return (outputs["reference"] - outputs["sdpa"]).abs().max().item() <= tolerance
