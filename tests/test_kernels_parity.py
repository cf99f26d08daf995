"""Every window-attention backend equals the float64 reference at every shape family of REFERENCE.md §4.

Forward and the gradients of q, k, v and bias, with and without bias/mask; norm-wise relative error at most
1e-5 in fp32 and 2e-2 in bf16 (fp16 on GPU). Per-window shapes (Nq, Nk, d, scale) are the real ones; window
and head counts are small, as they are only grid dimensions: 2 images × 2 windows × 1 head where a mask
repeats over the batch, else 2 windows × 2 heads (4 Triton programs per query block). The Triton kernel runs
compiled on a GPU when one is present (else those cases skip) and in the Triton interpreter on CPU; Triton
chooses between interpreter and compiler when it is imported, so the interpreter cases run only in a process
started with TRITON_INTERPRET=1; test_kernels_triton.py starts one.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from kernels import window_attention
from kernels.backends import reference
from tests.helpers.attention_inputs import FAMILIES, Family, make_inputs, relative_error

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-2}
CASES = [
    pytest.param(family, extras, id=f"{family.name}-{'extras' if extras else 'plain'}")
    for family in FAMILIES
    for extras in ((True, False) if family.biased or family.masked else (False,))
]


def _backends() -> list:
    triton_marks = [pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")]
    interpreter_marks = [
        *triton_marks,
        pytest.mark.skipif(not INTERPRETING, reason="needs TRITON_INTERPRET=1 (see test_kernels_triton)"),
    ]
    return [
        pytest.param("reference", "cpu", id="reference"),
        pytest.param("sdpa", "cpu", id="sdpa"),
        pytest.param("triton", "cpu", id="triton-interpreter", marks=interpreter_marks),
        pytest.param(
            "sdpa", "cuda", id="sdpa-cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
        ),
        pytest.param(
            "triton",
            "cuda",
            id="triton-cuda",
            marks=[*triton_marks, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")],
        ),
    ]


def check_against_float64(backend: str, device: str, family: Family, dtype, *, bias: bool, mask: bool):
    inputs = make_inputs(family, dtype, device, bias=bias, mask=mask)
    leaves = [None if t is None else t.detach().requires_grad_(i < 4) for i, t in enumerate(inputs)]
    exact = [None if t is None else t.detach().cpu().double() for t in inputs]
    exact = [None if t is None else t.requires_grad_(i < 4) for i, t in enumerate(exact)]
    scale = family.head_dim**-0.5 if family.scale is None else family.scale

    out = window_attention(*leaves[:3], bias=leaves[3], mask=leaves[4], scale=family.scale, backend=backend)
    expected = reference.attention(*exact, scale)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    out.backward(grad.to(out.device))
    expected.backward(grad.double())

    assert out.dtype == dtype and out.shape == expected.shape
    tolerance = TOLERANCE[dtype]
    errors = {"out": relative_error(out, expected)}
    for name, leaf, exact_leaf in zip(("q", "k", "v", "bias"), leaves, exact, strict=False):
        if leaf is not None:
            errors[f"d{name}"] = relative_error(leaf.grad, exact_leaf.grad)
    assert max(errors.values()) <= tolerance, errors


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("family", "with_extras"), CASES)
@pytest.mark.parametrize(("backend", "device"), _backends())
def test_backend_matches_float64_reference(backend, device, family, with_extras, dtype):
    extras = {"bias": with_extras and family.biased, "mask": with_extras and family.masked}
    check_against_float64(backend, device, family, dtype, **extras)


@pytest.mark.parametrize(("bias", "mask"), [(True, False), (False, True)], ids=["bias-only", "mask-only"])
@pytest.mark.parametrize(("backend", "device"), _backends())
def test_bias_or_mask_alone(backend, device, bias, mask):
    check_against_float64(backend, device, FAMILIES[0], torch.float32, bias=bias, mask=mask)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU")
@pytest.mark.parametrize("backend", ["sdpa", pytest.param("triton", marks=_backends()[-1].marks)])
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_fp16_on_gpu(backend, family):
    check_against_float64(backend, "cuda", family, torch.float16, bias=family.biased, mask=family.masked)


@pytest.mark.parametrize(("backend", "device"), _backends())
def test_mask_gradient(backend, device):
    """A mask that requires a gradient gets the score gradient summed over images and heads."""
    q, k, v, bias, mask = make_inputs(FAMILIES[1], torch.float32, device, bias=True, mask=True)
    mask.requires_grad_()
    exact_mask = mask.detach().cpu().double().requires_grad_()
    window_attention(q, k, v, bias=bias, mask=mask, backend=backend).sum().backward()
    exact = [t.detach().cpu().double() for t in (q, k, v, bias)]
    reference.attention(*exact, exact_mask, FAMILIES[1].head_dim ** -0.5).sum().backward()
    assert relative_error(mask.grad, exact_mask.grad) <= 1e-5
