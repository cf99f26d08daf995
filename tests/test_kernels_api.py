"""The window-attention op's contract: input checks, backend choice and forcing, reasons, the batch layout."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import kernels
from kernels import BackendUnavailable, choose_backend, why_not, window_attention

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def inputs(windows=4, heads=2, n_q=16, n_k=16, dim=8, mask_windows=2, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(windows, heads, n_q, dim, generator=gen, dtype=dtype)
    k = torch.randn(windows, heads, n_k, dim, generator=gen, dtype=dtype)
    v = torch.randn(windows, heads, n_k, dim, generator=gen, dtype=dtype)
    bias = torch.randn(heads, n_q, n_k, generator=gen, dtype=dtype)
    mask = torch.where(torch.rand(mask_windows, n_q, n_k, generator=gen) < 0.3, -100.0, 0.0).to(dtype)
    return q, k, v, bias, mask


def test_window_i_of_image_b_takes_mask_i():
    """Row b·nW + i uses mask[i] and every head its own bias, written out one window at a time."""
    q, k, v, bias, mask = inputs()
    out = window_attention(q, k, v, bias=bias, mask=mask)
    for row in range(q.shape[0]):
        scores = q[row] @ k[row].transpose(-2, -1) * q.shape[-1] ** -0.5 + bias + mask[row % mask.shape[0]]
        torch.testing.assert_close(out[row], scores.softmax(-1) @ v[row], rtol=1e-5, atol=1e-6)


def test_scale_is_explicit_when_given():
    q, k, v, _, _ = inputs()
    expected = torch.softmax(q @ k.transpose(-2, -1), -1) @ v
    torch.testing.assert_close(window_attention(q, k, v, scale=1.0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda a: {**a, "q": a["q"][0]}, ValueError, "q must be 4-D"),
        (lambda a: {**a, "k": a["k"][:, :1]}, ValueError, "k must have shape"),
        (lambda a: {**a, "k": a["k"][..., :4]}, ValueError, "head_dim=8"),
        (lambda a: {**a, "v": a["v"][:, :, :8]}, ValueError, "v must have the shape of k"),
        (lambda a: {**a, "bias": a["bias"][0]}, ValueError, "bias must be"),
        (lambda a: {**a, "mask": a["mask"][:, :8]}, ValueError, "mask must be"),
        (lambda a: {**a, "mask": torch.zeros(3, 16, 16)}, ValueError, "does not divide"),
        (lambda a: {**a, "bias": a["bias"].double()}, TypeError, r"bias.to\(q.dtype\)"),
        (lambda a: {**a, "v": a["v"].half()}, TypeError, "v has dtype"),
        (lambda a: {k: t.long() if k == "q" else t for k, t in a.items()}, TypeError, "floating-point"),
    ],
)
def test_inputs_are_checked_with_clear_errors(change, error, message):
    q, k, v, bias, mask = inputs()
    args = change({"q": q, "k": k, "v": v, "bias": bias, "mask": mask})
    with pytest.raises(error, match=message):
        window_attention(args["q"], args["k"], args["v"], bias=args["bias"], mask=args["mask"])


def test_auto_on_cpu_uses_fused_for_fp32_inference_sdpa_else_except_training_with_bias_or_mask(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    q = torch.randn(2, 1, 4, 8)
    assert choose_backend("auto", q, needs_grad=False) == "fused_cpu"
    assert choose_backend("auto", torch.randn(2, 1, 4, 160), needs_grad=False) == "sdpa"  # head dim > 128
    assert choose_backend("auto", q, needs_grad=True) == "reference"
    assert choose_backend("auto", q, needs_grad=True, additive=False) == "sdpa"
    assert choose_backend("auto", q.bfloat16(), needs_grad=True, additive=False) == "reference"
    assert choose_backend("auto", q.double(), needs_grad=False) == "reference"
    assert choose_backend("auto", q.bfloat16(), needs_grad=False) == "fused_cpu"
    assert choose_backend("auto", q.bfloat16(), needs_grad=False, additive=False) == "sdpa"


def test_auto_runs_reference_math_while_exporting(monkeypatch):
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert choose_backend("auto", torch.randn(2, 1, 4, 8), needs_grad=False) == "reference"


def test_environment_variable_forces_a_backend_and_the_argument_wins(monkeypatch):
    q = torch.randn(2, 1, 4, 8)
    monkeypatch.setenv(kernels.ENV_VAR, "reference")
    assert choose_backend("auto", q, needs_grad=False) == "reference"
    assert choose_backend("sdpa", q, needs_grad=False) == "sdpa"
    monkeypatch.setenv(kernels.ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match="unknown window-attention backend 'nonsense'"):
        choose_backend("auto", q, needs_grad=False)


def test_forced_backends_give_the_same_result(monkeypatch):
    q, k, v, bias, mask = inputs()
    expected = window_attention(q, k, v, bias=bias, mask=mask, backend="reference")
    monkeypatch.setenv(kernels.ENV_VAR, "sdpa")
    torch.testing.assert_close(window_attention(q, k, v, bias=bias, mask=mask), expected)


@pytest.mark.skipif(torch.cuda.is_available() or INTERPRETING, reason="checks the reasons on a CPU-only run")
def test_triton_reasons_on_cpu():
    q = torch.randn(2, 1, 4, 8)
    assert kernels.available_backends(q) == ["reference", "sdpa", "fused_cpu"]
    assert kernels.available_backends(q, needs_grad=True) == ["reference", "sdpa"]
    if HAS_TRITON:
        assert "needs CUDA tensors" in why_not("triton", q)
        assert "TRITON_INTERPRET=1" in why_not("triton", q)
        assert "dtype torch.float64" in why_not("triton", q.double())
        assert "head dim 160" in why_not("triton", torch.randn(2, 1, 4, 160))
    with pytest.raises(BackendUnavailable, match="backend 'triton' cannot run"):
        window_attention(q, q, q, backend="triton")


def test_missing_triton_is_named(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_triton(name, package=None):
        return None if name == "triton" else find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", without_triton)
    assert why_not("triton", torch.randn(2, 1, 4, 8)) == "triton is not installed (pip install triton)"


@pytest.mark.skipif(
    not (HAS_TRITON and INTERPRETING), reason="needs TRITON_INTERPRET=1 (see test_kernels_triton)"
)
def test_triton_runs_on_cpu_in_the_interpreter(monkeypatch):
    q, k, v, bias, mask = inputs(n_q=20, n_k=24, dim=6)
    assert why_not("triton", q) is None
    expected = window_attention(q, k, v, bias=bias, mask=mask, backend="reference")
    actual = window_attention(q, k, v, bias=bias, mask=mask, backend="triton")
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert "cannot be traced or exported" in why_not("triton", q)
