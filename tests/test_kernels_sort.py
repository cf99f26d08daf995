"""`kernels.sort` equals torch.sort bit for bit (values and indices, ties, NaN, ±inf, ±0 included) wherever
its compiled kernel runs, falls back to torch.sort where it does not, and leaves the outputs of the networks
that sort (Histoformer, HOGformer) unchanged to the last bit."""

from __future__ import annotations

import pytest
import torch

import archs
from kernels import sort as sort_module
from kernels.backends import fused_cpu_build
from kernels.backends.fused_cpu_build import BuildError
from kernels.sort import sort


def awkward(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Values with many ties (small integers), both zeros, both infinities and NaNs of both signs."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 3).round()
    flat = x.view(-1)
    picks = torch.randperm(flat.numel(), generator=gen)
    share = max(flat.numel() // 40, 1)
    for i, value in enumerate((-0.0, float("nan"), -float("nan"), float("inf"), -float("inf"))):
        flat[picks[i * share : (i + 1) * share]] = value
    return x


def assert_same_as_torch(x: torch.Tensor, dim: int) -> None:
    want_values, want_indices = torch.sort(x, dim)
    values, indices = sort(x, dim)
    assert torch.equal(indices, want_indices)
    assert torch.equal(values.contiguous().view(torch.int32), want_values.contiguous().view(torch.int32))


@pytest.mark.parametrize("length", [1, 17, 64, 65, 128, 1000, 16384])
@pytest.mark.parametrize("kind", ["ties", "randn"])
def test_equals_torch_sort_along_the_last_dim(length, kind):
    gen = torch.Generator().manual_seed(1)
    x = awkward((3, length)) if kind == "ties" else torch.randn(5, length, generator=gen)
    assert_same_as_torch(x, -1)


@pytest.mark.parametrize("dim", [0, 1, -2])
def test_equals_torch_sort_along_other_dims_and_views(dim):
    x = awkward((70, 80, 66))
    assert_same_as_torch(x, dim)
    assert_same_as_torch(x.transpose(0, 2), dim)  # a non-contiguous view
    assert_same_as_torch(x[:, :1].expand(70, 90, 66), dim)  # expanded: stride 0


def test_the_kernel_runs_in_float32_inference():
    calls = []
    real = sort_module._library()
    if real is None:
        pytest.skip("the CPU sort kernel cannot be built here (no C++ compiler)")
    sort_module._library.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sort_module, "_library", lambda: lambda *args: calls.append(args) or real(*args))
            assert_same_as_torch(awkward((4, 300)), -1)
            assert_same_as_torch(awkward((4, 63)), -1)  # short rows: torch.sort
    finally:
        sort_module._library.cache_clear()
    assert len(calls) == 1 and calls[0][3:] == (4, 300)


def test_torch_sort_runs_where_the_kernel_does_not():
    x = awkward((4, 100)).nan_to_num()
    leaf = x.clone().requires_grad_()
    values, indices = sort(leaf, -1)
    values.sum().backward()  # gradients flow as through torch.sort
    assert torch.equal(leaf.grad, torch.ones_like(x)) and torch.equal(indices, torch.sort(x, -1).indices)
    for other in (x.double(), x.to(torch.bfloat16), x[:0], torch.tensor(3.0)):
        want = torch.sort(other, -1)
        got = sort(other, -1)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_a_kernel_that_cannot_be_built_warns_once_and_falls_back(monkeypatch):
    def fail(**_):
        raise BuildError("no C++ compiler found (set CXX, or install g++)")

    monkeypatch.setattr(fused_cpu_build, "build", fail)
    sort_module._library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            assert_same_as_torch(awkward((2, 128)), -1)
        assert_same_as_torch(awkward((2, 128)), -1)  # no second warning (pytest's filters make one an error)
    finally:
        sort_module._library.cache_clear()


@pytest.mark.parametrize("name", ["Histoformer", "HOGformer"])
def test_networks_that_sort_give_the_same_output_to_the_bit(name, monkeypatch, real_lr):
    family = next(f for f in archs.FAMILIES if f.name == name)
    torch.manual_seed(0)
    model = family.build(**{**family.presets[name], "dim": 12, "num_blocks": (1, 1, 1, 1)}).eval()
    x = real_lr[..., :64, :80]
    with torch.no_grad():
        got = model(x)
        monkeypatch.setattr(sort_module, "_kernel_applies", lambda *_: False)
        want = model(x)
    assert torch.equal(got, want)
