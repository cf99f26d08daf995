"""The fused CPU window-attention kernel: equal to the float64 reference math at every shape of REFERENCE.md
§4 (strided and contiguous inputs, odd sizes, extreme logits, fp32 and bf16), independent of the thread
count, built once and cached, and chosen by `auto` only where it can run (CPU inference with a bias or
mask), with a reason everywhere else."""

from __future__ import annotations

import warnings

import pytest
import torch

import kernels
from kernels import BackendUnavailable, choose_backend, why_not, window_attention
from kernels.backends import fused_cpu, fused_cpu_build, reference
from tests.helpers.attention_inputs import FAMILIES, make_inputs, relative_error


def exact(inputs, scale):
    return reference.attention(*[None if t is None else t.double() for t in inputs], scale)


def fused(inputs, scale=None):
    q, k, v, bias, mask = inputs
    with torch.no_grad():
        return window_attention(q, k, v, bias=bias, mask=mask, scale=scale, backend="fused_cpu")


def test_builds_on_this_machine():
    assert why_not("fused_cpu", torch.empty(1, 1, 1, 8)) is None


@pytest.mark.parametrize("contiguous", [False, True], ids=["strided", "contiguous"])
@pytest.mark.parametrize("extras", [True, False], ids=["extras", "plain"])
@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_matches_float64_reference_at_every_shape(family, extras, contiguous):
    with_bias, with_mask = extras and family.biased, extras and family.masked
    inputs = make_inputs(family, torch.float32, "cpu", bias=with_bias, mask=with_mask)
    if contiguous:
        inputs = [None if t is None else t.contiguous() for t in inputs]
    scale = family.head_dim**-0.5 if family.scale is None else family.scale
    out = fused(inputs, family.scale)
    expected = exact(inputs, scale)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert relative_error(out, expected) <= 1e-6
    assert (out.double() - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_bfloat16_inputs_computed_in_fp32(family):
    """bf16 in and out, fp32 inside: off the float64 math on the same bf16 values by the output's rounding
    alone (2⁻⁹ relative at most), where SDPA's bf16 path is allowed 2e-2 (tests/test_kernels_parity.py)."""
    inputs = make_inputs(family, torch.bfloat16, "cpu", bias=family.biased, mask=family.masked)
    scale = family.head_dim**-0.5 if family.scale is None else family.scale
    out = fused(inputs, family.scale)
    assert out.dtype == torch.bfloat16
    expected = exact(inputs, scale)
    assert relative_error(out, expected) <= 2e-3
    assert ((out.double() - expected).abs() <= expected.abs() * 2**-8 + 1e-6).all()


@pytest.mark.parametrize(
    ("images", "windows", "heads", "n_q", "n_k", "dim"),
    [
        (2, 3, 2, 49, 49, 32),  # window 7: rows that do not fill the 16-lane vectors or the 4-row tiles
        (1, 2, 3, 7, 5, 1),
        (3, 1, 1, 1, 1, 17),
        (1, 2, 2, 33, 130, 128),  # the largest head dim, keys past two 64-wide tiles
        (2, 2, 1, 64, 80, 48),
    ],
)
def test_odd_sizes(images, windows, heads, n_q, n_k, dim):
    gen = torch.Generator().manual_seed(n_q * n_k + dim)
    q = torch.randn(images * windows, heads, n_q, dim, generator=gen)
    k = torch.randn(images * windows, heads, n_k, dim, generator=gen)
    v = torch.randn(images * windows, heads, n_k, dim, generator=gen)
    bias = torch.randn(heads, n_q, n_k, generator=gen)
    mask = torch.where(torch.rand(windows, n_q, n_k, generator=gen) < 0.3, -100.0, 0.0)
    for extras in ((bias, mask), (bias, None), (None, mask), (None, None)):
        inputs = [q, k, v, *extras]
        out = fused(inputs)
        assert (out.double() - exact(inputs, dim**-0.5)).abs().max().item() <= 1e-5


def test_extreme_logits_and_fully_masked_rows():
    """Integer logits up to ±1024, exact in fp32 (nearly one-hot rows: exp underflows for all but the top
    few keys), and rows whose every key is masked (the softmax is shift-invariant, so they equal the
    unmasked rows), as in the float64 math."""
    gen = torch.Generator().manual_seed(3)
    q, k = (torch.randint(-8, 9, (4, 2, 64, 16), generator=gen).float() for _ in range(2))
    v = torch.randn(4, 2, 64, 16, generator=gen)
    inputs = [q, k, v, None, None]
    assert exact(inputs, 1.0).abs().max() > 0
    torch.testing.assert_close(fused(inputs, 1.0).double(), exact(inputs, 1.0), rtol=0, atol=1e-5)
    q, k = (torch.randn(4, 2, 64, 16, generator=gen) for _ in range(2))
    mask = torch.zeros(2, 64, 64)
    mask[:, :8] = -100.0
    inputs = [q, k, v, torch.randn(2, 64, 64, generator=gen), mask]
    torch.testing.assert_close(fused(inputs).double(), exact(inputs, 16**-0.5), rtol=0, atol=1e-5)


def test_nan_stays_in_its_row():
    q, k, v, bias, mask = make_inputs(FAMILIES[0], torch.float32, "cpu", bias=True, mask=True)
    q = q.clone()
    q[1, 0, 5, 0] = float("nan")
    out = fused([q, k, v, bias, mask])
    assert out[1, 0, 5].isnan().all()
    out[1, 0, 5] = 0
    assert out.isfinite().all()


def test_threads_do_not_change_a_bit():
    inputs = make_inputs(FAMILIES[2], torch.float32, "cpu", bias=True, mask=True)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fused(inputs)
        torch.set_num_threads(2)
        two = fused(inputs)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_output_is_the_transposed_view_the_networks_reshape_without_copying():
    q, k, v, bias, mask = make_inputs(FAMILIES[0], torch.float32, "cpu", bias=True, mask=True)
    out = fused([q, k, v, bias, mask])
    windows, heads, n_q, dim = q.shape
    merged = out.transpose(1, 2).reshape(windows, n_q, heads * dim)
    assert merged.data_ptr() == out.data_ptr() and merged.is_contiguous()


def test_auto_picks_it_for_cpu_inference_with_bias_or_mask_only(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    q = torch.randn(2, 1, 4, 8)
    assert choose_backend("auto", q, needs_grad=False) == "fused_cpu"
    assert choose_backend("auto", q, needs_grad=False, additive=False) == "sdpa"  # CAMixer: flash is faster
    assert choose_backend("auto", q.bfloat16(), needs_grad=False) == "fused_cpu"
    assert choose_backend("auto", q, needs_grad=True) == "reference"
    assert "float32 or bfloat16" in why_not("fused_cpu", q.half())
    assert "head dim 160" in why_not("fused_cpu", torch.randn(2, 1, 4, 160))
    assert "forward pass only" in why_not("fused_cpu", q, needs_grad=True)
    leaf = q.clone().requires_grad_()
    with pytest.raises(BackendUnavailable, match="forward pass only"):
        window_attention(leaf, leaf, leaf, backend="fused_cpu")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # an opaque ctypes call breaks graphs
    assert choose_backend("auto", q, needs_grad=False) == "sdpa"


def test_a_failed_build_falls_back_to_sdpa_and_says_why(monkeypatch):
    monkeypatch.delenv(kernels.ENV_VAR, raising=False)
    monkeypatch.setattr(fused_cpu, "_library", lambda: (None, "could not build it: no C++ compiler found"))
    q, k, v, bias, mask = make_inputs(FAMILIES[0], torch.float32, "cpu", bias=True, mask=True)
    assert choose_backend("auto", q, needs_grad=False) == "sdpa"
    with torch.no_grad():
        out = window_attention(q, k, v, bias=bias, mask=mask)
    assert (out.double() - exact([q, k, v, bias, mask], 30**-0.5)).abs().max().item() <= 1e-5
    with pytest.raises(BackendUnavailable, match="could not build it: no C"):
        window_attention(q, k, v, backend="fused_cpu")


def test_a_library_that_cannot_be_built_is_reported_once(monkeypatch):
    def no_compiler(**_):
        raise fused_cpu_build.BuildError("no C++ compiler found (set CXX, or install g++)")

    monkeypatch.setattr(fused_cpu_build, "build", no_compiler)
    fused_cpu._library.cache_clear()
    q = torch.empty(1, 1, 1, 8)
    try:
        with pytest.warns(RuntimeWarning, match="could not build it: no C\\+\\+ compiler found.*using SDPA"):
            assert fused_cpu.why_unavailable(q, False).startswith("could not build it")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # decided once a process: no second warning
            assert fused_cpu.why_unavailable(q, False).startswith("could not build it")
    finally:
        fused_cpu._library.cache_clear()


def test_build_is_cached_and_rebuilt_only_when_its_inputs_change(tmp_path, monkeypatch):
    first = fused_cpu_build.build(tmp_path)
    stamp = first.stat().st_mtime_ns
    assert fused_cpu_build.build(tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left behind
    changed = tmp_path / "changed.cpp"
    changed.write_text(fused_cpu_build.SOURCE.read_text() + "\n// changed\n")
    monkeypatch.setattr(fused_cpu_build, "SOURCE", changed)
    assert fused_cpu_build.build(tmp_path) != first


@pytest.mark.parametrize(
    ("compiler", "message"),
    [
        ("/bin/false", "false failed on fused_cpu.cpp"),
        ("/nonexistent/c++", "cannot run /nonexistent/c\\+\\+"),
    ],
)
def test_build_failures_are_one_line_errors(tmp_path, monkeypatch, compiler, message):
    monkeypatch.setenv("CXX", compiler)
    with pytest.raises(fused_cpu_build.BuildError, match=message) as error:
        fused_cpu_build.build(tmp_path)
    assert "\n" not in str(error.value)
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".so"]


def test_compile_errors_name_the_first_error(tmp_path, monkeypatch):
    broken = tmp_path / "fused_cpu.cpp"
    broken.write_text("int broken( {\n")
    monkeypatch.setattr(fused_cpu_build, "SOURCE", broken)
    with pytest.raises(fused_cpu_build.BuildError, match=r"failed on fused_cpu.cpp: .*error"):
        fused_cpu_build.build(tmp_path / "cache")


def test_unwritable_cache_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # even root cannot make a directory inside a file
    with pytest.raises(fused_cpu_build.BuildError, match="cannot write to .*a-file/kernels: Not a directory"):
        fused_cpu_build.build(blocker / "kernels")
