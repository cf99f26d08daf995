"""Window-attention benchmark: each backend of `kernels.window_attention` against `reference` (official math).

Run from the repository root: `python -m benchmarks.window_attention [--quick] [--device cpu|cuda]`. For each
shape family of REFERENCE.md §4, input layout (q, k, v as the strided views of a packed projection that the
networks pass, and as contiguous tensors) and dtype (fp32, bf16; fp16 too on a GPU) it times the backends
side by side in one process, forward (no grad) and forward+backward (q, k, v and bias need gradients; the
forward-only fused CPU kernel sits those out), interleaved call by call so that load changes hit all
alike, and reports the median after warm-up, the speed-up over `reference` (the plain math: matmul, add bias
and mask, softmax, matmul; reference time / backend time) and the peak memory one call adds: on CPU the
rise of the resident set (VmHWM, reset through /proc/self/clear_refs after a malloc_trim), on CUDA
`max_memory_allocated` above the level before the call. Inputs exist before the call and are not counted;
outputs, gradients and all intermediates are. "(auto)" marks the backend that the default
`backend="auto"` picks for that call.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks.memory import rss_peak_mib
from kernels import BACKENDS, choose_backend, why_not, window_attention


@dataclass(frozen=True)
class Shape:
    """One attention call of a network block: images × windows per image, heads, tokens, head dim."""

    name: str
    images: int
    windows: int
    heads: int
    n_q: int
    n_k: int
    head_dim: int
    bias: bool = True
    mask: bool = True
    scale: float | None = None


SHAPES = [
    Shape("swinir-classic", 4, 64, 6, 64, 64, 30),  # 4 patches of 64×64, window 8: B·nW = 256
    Shape("swinir-classic-tile", 1, 256, 6, 64, 64, 30),  # one 128×128 inference tile
    Shape("swinir-light", 4, 64, 6, 64, 64, 10),
    Shape("hat-sa", 4, 16, 6, 256, 256, 30),  # window 16
    Shape("hat-ocab", 4, 16, 6, 256, 576, 30, mask=False),  # 24×24 overlapping keys, unmasked
    Shape("srformer-psa", 4, 9, 6, 484, 121, 30),  # window 22 on 66×66
    Shape("srformer-light-psa", 4, 16, 6, 256, 64, 10),
    Shape("dat-spatial", 4, 16, 3, 256, 256, 30),  # 8×32 windows
    Shape("camixer", 4, 16, 1, 256, 256, 60, bias=False, mask=False, scale=1.0),
]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


LAYOUTS = ("strided", "contiguous")


def make_inputs(
    shape: Shape, dtype: torch.dtype, device: str, windows_divisor: int = 1, layout: str = "strided"
) -> list:
    """q, k, v (strided views of packed projections, as networks produce them, or contiguous copies of
    those), bias and a 0/−100 mask."""
    windows = max(1, shape.windows // windows_divisor)
    total = shape.images * windows
    q = torch.randn(total, shape.n_q, shape.heads, shape.head_dim, device=device, dtype=dtype).transpose(1, 2)
    kv = torch.randn(total, shape.n_k, 2, shape.heads, shape.head_dim, device=device, dtype=dtype)
    k, v = kv.permute(2, 0, 3, 1, 4)
    bias = torch.randn(shape.heads, shape.n_q, shape.n_k, device=device, dtype=dtype) if shape.bias else None
    mask = None
    if shape.mask:
        regions = torch.rand(windows, shape.n_q, shape.n_k, device=device) < 0.25
        mask = (regions.to(dtype) * -100.0).to(dtype)
    if layout == "contiguous":
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    return [q, k, v, bias, mask]


def make_runs(shape: Shape, inputs: list, backward: bool) -> dict[str, Callable[[], None]]:
    """One callable per backend that can run, for the forward or the forward+backward pass."""
    q, k, v, bias, mask = inputs
    leaves = [t.detach().requires_grad_(backward) if t is not None else None for t in (q, k, v, bias)]
    grad = torch.randn(q.shape, device=q.device, dtype=q.dtype) if backward else None
    return {
        name: _call(leaves, mask, shape.scale, name, grad)
        for name in BACKENDS
        if why_not(name, q, needs_grad=backward) is None
    }


def _call(leaves, mask, scale, backend, grad) -> Callable[[], None]:
    q, k, v, bias = leaves
    wanted = [leaf for leaf in leaves if leaf is not None]

    def run() -> None:
        with torch.set_grad_enabled(grad is not None):
            out = window_attention(q, k, v, bias=bias, mask=mask, scale=scale, backend=backend)
            if grad is not None:
                torch.autograd.grad(out, wanted, grad)

    return run


def median_ms(runs: dict[str, Callable[[], None]], warmup: int, repeat: int, cuda: bool) -> dict:
    """Median wall time of each run after `warmup` calls, interleaved call by call."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_mib(run: Callable[[], None], cuda: bool) -> float:
    """Memory that one call adds at its peak, in MiB (see the module docstring): median of three calls."""
    return statistics.median(_peak_mib(run, cuda) for _ in range(3))


def _peak_mib(run: Callable[[], None], cuda: bool) -> float:
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return rss_peak_mib(run)


def machine(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", choices=["cpu", "cuda"], default=default_device)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), help="fp32 bf16 (+fp16 on CUDA)")
    parser.add_argument("--shapes", nargs="+", choices=[s.name for s in SHAPES], help="default: all")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--forward-only", action="store_true", help="skip forward+backward")
    parser.add_argument("--quick", action="store_true", help="a quarter of the windows, 1 warm-up, 3 repeats")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    dtypes = args.dtypes or (["fp32", "bf16", "fp16"] if cuda else ["fp32", "bf16"])
    shapes = [s for s in SHAPES if not args.shapes or s.name in args.shapes]
    warmup, repeat, divisor = (1, 3, 4) if args.quick else (args.warmup, args.repeat, 1)
    passes = [False] if args.forward_only else [False, True]

    print(f"# window attention on {machine(args.device)}; median of {repeat} after {warmup} warm-up")
    print("| shape | layout | dtype | pass | backend | ms | × vs reference | peak MiB |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for shape in shapes:
        for layout in args.layouts:
            for dtype_name in dtypes:
                inputs = make_inputs(shape, DTYPES[dtype_name], args.device, divisor, layout)
                for backward in passes:
                    report(shape, layout, dtype_name, inputs, backward, warmup, repeat, cuda)


def report(
    shape: Shape, layout: str, dtype: str, inputs: list, backward: bool, warmup: int, repeat: int, cuda: bool
):
    """Time one shape, layout, dtype and pass on every backend and print its table rows."""
    runs = make_runs(shape, inputs, backward)
    times = median_ms(runs, warmup, repeat, cuda)
    auto = choose_backend("auto", inputs[0], needs_grad=backward, additive=shape.bias or shape.mask)
    for name, ms in times.items():
        backend = f"{name} (auto)" if name == auto else name
        cells = [shape.name, layout, dtype, "fwd+bwd" if backward else "fwd", backend, f"{ms:.2f}"]
        speedup, memory = times["reference"] / ms, peak_mib(runs[name], cuda)
        print(f"| {' | '.join(cells)} | {speedup:.2f} | {memory:.1f} |", flush=True)


if __name__ == "__main__":
    main()
