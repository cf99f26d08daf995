"""kernels.dynamic_conv: the compiled CPU kernel of DLGSANet's dynamic depth-wise convolution against the
float64 transcription of the official CUDA kernel (tests/oracles), and when the tensor ops run instead."""

from __future__ import annotations

import pytest
import torch

from kernels import dynamic_conv
from kernels.backends import fused_cpu_build
from kernels.dynamic_conv import dynamic_depthwise_conv
from tests.oracles import dlgsanet_reference as reference

# (batch, channels, groups, k, height, width): DLGSANet's (k 7, groups = dim / heads), odd sizes, maps smaller
# than the kernel, one group, one channel per group
SHAPES = [
    (1, 48, 8, 7, 33, 40), (2, 12, 3, 5, 9, 11), (1, 6, 6, 3, 1, 17), (2, 4, 1, 7, 3, 2),
    (1, 90, 15, 7, 16, 16),
]


def _inputs(batch, channels, groups, k, h, w):
    g = torch.Generator().manual_seed(channels * k + h)
    x = torch.randn(batch, channels, h, w, generator=g)
    return x, torch.randn(batch, groups, k, k, h, w, generator=g)


@pytest.fixture
def kernel_only(monkeypatch):
    """Fails the test if the tensor ops run (the kernel must)."""

    def refuse(*_):
        raise AssertionError("the tensor ops ran where the kernel should")

    monkeypatch.setattr(dynamic_conv, "_by_tensor_ops", refuse)


@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_kernel_equals_the_official_op(shape, kernel_only):
    x, weight = _inputs(*shape)
    with torch.inference_mode():
        got = dynamic_depthwise_conv(x, weight)
    expected = reference.idynamic(x.double(), weight.double(), (shape[3] - 1) // 2)
    assert got.shape == x.shape and got.dtype == torch.float32
    assert (got.double() - expected).abs().max().item() <= 1e-6 * max(expected.abs().max().item(), 1.0)


def test_kernel_and_tensor_ops_agree_to_rounding():
    x, weight = _inputs(*SHAPES[0])
    with torch.inference_mode():
        kernel = dynamic_depthwise_conv(x, weight)
    with torch.enable_grad():  # the tensor ops' path
        tensor_ops = dynamic_depthwise_conv(x.requires_grad_(), weight)
    assert tensor_ops.grad_fn is not None
    assert (kernel - tensor_ops).abs().max().item() < 1e-5


@pytest.mark.parametrize("case", ["channels_last", "bfloat16", "gradients"])
def test_the_tensor_ops_run_where_the_kernel_does_not_apply(case, monkeypatch):
    def refuse(*_):
        raise AssertionError("the kernel ran")

    monkeypatch.setattr(dynamic_conv, "_by_kernel", refuse)
    x, weight = _inputs(*SHAPES[1])
    if case == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif case == "bfloat16":
        x, weight = x.bfloat16(), weight.bfloat16()
    else:
        x.requires_grad_()
    out = dynamic_depthwise_conv(x, weight)
    expected = reference.idynamic(x.double(), weight.double(), 2)
    assert (out.double() - expected).abs().max().item() < (0.3 if case == "bfloat16" else 1e-5)


def test_a_kernel_that_cannot_be_built_warns_once_and_falls_back(monkeypatch):
    def no_compiler(**_):
        raise fused_cpu_build.BuildError("no C++ compiler found (set CXX, or install g++)")

    monkeypatch.setattr(fused_cpu_build, "build", no_compiler)
    dynamic_conv._library.cache_clear()
    x, weight = _inputs(*SHAPES[1])
    try:
        with torch.inference_mode():
            with pytest.warns(RuntimeWarning, match="dynamic convolution kernel: could not build it: no C"):
                first = dynamic_depthwise_conv(x, weight)
            second = dynamic_depthwise_conv(x, weight)  # no second warning (pytest's filters: an error)
        assert torch.equal(first, second)
    finally:
        dynamic_conv._library.cache_clear()
