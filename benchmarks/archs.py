"""Network benchmark, fp32 CPU: each family's light and full preset against the official implementation.

Our RCAN, SwinIR, HAT and DAT run beside spandrel's copies of the official code, SRFormer beside
spandrel_extra_arches', all holding the same state dict; HAN (in no package) beside our RCAN; CAMixerSR
(in no package) beside tests/oracles/camixer_reference.py in fp32 with the same routing draws. Ours run as
`sr upscale` runs them (window attention on `auto`; SwinIR and CAMixerSR with the NHWC weights and inputs
of their `channels_last` flag), except RCAN and HAN, kept NCHW so that RCAN's output can be compared with
spandrel's bit for bit (random weights make these deep stacks chaotic under a layout change).

Run from the repository root: `python -m benchmarks.archs [--sizes 64 128] [--repeat 5] [--threads 2]
[--only NAME ...]`. Median time over `--repeat` calls after one warm-up, all networks interleaved in one
process; speed-up = the compared network's time / ours. "% of peak" is our forward's FLOPs (counted by
`torch.utils.flop_counter` on the reference attention math, so the fused kernel's work is counted as the
official math's) per second, against a 2048² fp32 matmul timed interleaved with the networks in the same
process. Peak memory is the rise of the resident set (VmHWM, reset through /proc/self/clear_refs) during
one forward.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archs import camixer, dat, hat, srformer, swinir
from archs.camixer import CAMixerSR
from archs.dat import DAT
from archs.han import HAN
from archs.hat import HAT
from archs.rcan import RCAN
from archs.registry import Family
from archs.srformer import SRFormer
from archs.swinir import SwinIR
from benchmarks.memory import rss_peak_mib
from kernels import ENV_VAR
from sr.allocator import keep_freed_memory
from sr.loading import channels_last_weights
from tests.oracles import camixer_reference
from tests.oracles.torchvision_stub import install as install_torchvision_stub


def engine_layout(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`x` in NHWC when the model's convolution weights are (the engine's layout for those families)."""
    nhwc = any(
        p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )
    return x.contiguous(memory_format=torch.channels_last) if nhwc else x


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    x = engine_layout(model, x)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(x.clone())  # spandrel scales its input in place

    return run


def forward_gflop(model: nn.Module, x: torch.Tensor) -> float:
    """GFLOP of one forward, window attention counted as the reference math (matmuls) it replaces."""
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "reference"
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(engine_layout(model, x))
    finally:
        if previous is None:
            del os.environ[ENV_VAR]
        else:
            os.environ[ENV_VAR] = previous
    return counter.get_total_flops() / 1e9


def median_ms(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each run, interleaved so that load changes hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def spandrel_model(state_dict: dict) -> nn.Module | None:
    install_torchvision_stub()
    try:
        import spandrel
    except ImportError:
        return None
    return spandrel.ModelLoader().load_from_state_dict(state_dict).model.eval()


def official_pairs(
    family: Family,
    ours_class: type[nn.Module],
    official: str,
    names: tuple[str, str],
    *,
    official_kwargs: dict | None = None,
    perturb_bias: bool = False,
) -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Our light and full preset (x4) and the official class `official` ('module:Class', spandrel's or
    spandrel_extra_arches' copy) holding the same weights, or None where that package is absent.

    Buffers our state dict leaves out (the family's ignored keys: shift masks, indices) are the only ones the
    official model may miss; it builds them itself. `perturb_bias` gives the position-bias tables the
    non-zero values of trained weights."""
    install_torchvision_stub()
    module, class_name = official.split(":")
    try:
        official_class = getattr(importlib.import_module(module), class_name)
    except ImportError:
        official_class = None
    pairs = {}
    for name in names:
        preset = family.presets[name]
        ours = ours_class(scale=4, **preset).eval()
        if perturb_bias:
            with torch.no_grad():
                for key, parameter in ours.named_parameters():
                    if key.endswith("relative_position_bias_table"):
                        parameter.normal_(0, 0.02)
        theirs = None
        if official_class is not None:
            theirs = official_class(upscale=4, **(official_kwargs or {}), **preset).eval()
            missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
            assert not unexpected and all(family.ignored_keys(key) for key in missing)
        pairs[name] = (channels_last_weights(ours) if family.channels_last else ours, theirs)
    return pairs


class Seeded(nn.Module):
    """`run(x)` right after `torch.manual_seed(0)`: CAMixerSR's routing draws repeat from call to call."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.run = run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return self.run(x)


def camixer_pairs() -> dict[str, tuple[nn.Module, nn.Module]]:
    """Our CAMixerSR-S (ratio 1.0) and CAMixerSR-light (the official ratio 0.5, routing drawn as officially),
    x4, and the official forward on the same weights: no package holds CAMixerSR, so the transcription in
    tests/oracles, run in fp32. Both are seeded per call, so they draw the same windows."""
    pairs = {}
    for name in ("CAMixerSR-S", "CAMixerSR-light"):
        preset = camixer.FAMILY.presets[name]
        ours = CAMixerSR(scale=4, stochastic=True, **preset).eval()
        official = partial(
            camixer_reference.camixersr,
            {key: value.clone() for key, value in ours.state_dict().items()},
            ratio=preset.get("ratio", 1.0),
            dtype=torch.float32,
        )
        if camixer.FAMILY.channels_last:
            channels_last_weights(ours)
        pairs[name] = (Seeded(ours), Seeded(official))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square LR input sides")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per network and size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", help="these networks (RCAN, HAN, preset names) and no others")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does (sr.allocator), for both sides alike
    torch.manual_seed(0)
    rcan = RCAN(scale=4).eval()
    reference = spandrel_model(rcan.state_dict())
    han = HAN(scale=4).eval()
    with torch.no_grad():
        han.la.gamma.fill_(0.5)
        han.csa.gamma.fill_(0.5)
    transformers = {
        **official_pairs(
            srformer.FAMILY,
            SRFormer,
            "spandrel_extra_arches.architectures.SRFormer:SRFormer",
            ("SRFormer-light", "SRFormer"),
        ),
        **official_pairs(
            swinir.FAMILY,
            SwinIR,
            "spandrel.architectures.SwinIR:SwinIR",
            ("swinir-light", "swinir-classic"),
            official_kwargs={"img_size": 64},
            perturb_bias=True,
        ),
        **official_pairs(
            hat.FAMILY, HAT, "spandrel.architectures.HAT:HAT", ("HAT-S", "HAT"), perturb_bias=True
        ),
        **official_pairs(
            dat.FAMILY,
            DAT,
            "spandrel.architectures.DAT:DAT",
            ("DAT-light", "DAT"),
            official_kwargs={"img_size": 64},
        ),
        **camixer_pairs(),
    }
    cnns = [name for name in ("RCAN", "HAN") if not args.only or name in args.only]
    transformers = {name: pair for name, pair in transformers.items() if not args.only or name in args.only}
    runs: dict[int, dict[str, Callable[[], torch.Tensor]]] = {}
    square = torch.randn(2048, 2048)
    our_models = {"RCAN": rcan, "HAN": han, **{name: pair[0] for name, pair in transformers.items()}}
    gflop = {}
    for size in args.sizes:
        x = torch.rand(1, 3, size, size)
        runs[size] = {"matmul": partial(torch.mm, square, square)}
        if cnns:  # HAN is timed beside our RCAN
            runs[size]["RCAN"] = forward(rcan, x)
        if "HAN" in cnns:
            runs[size]["HAN"] = forward(han, x)
        if "RCAN" in cnns and reference is not None:
            runs[size]["spandrel RCAN"] = forward(reference, x)
        for name, (ours, official) in transformers.items():
            runs[size][name] = forward(ours, x)
            if official is not None:
                runs[size][f"official {name}"] = forward(official, x)
        gflop[size] = {name: forward_gflop(our_models[name], x) for name in runs[size] if name in our_models}
    load_before = os.getloadavg()[0]
    ms = {size: median_ms(runs[size], args.repeat) for size in args.sizes}
    # Memory after timing: with M_MMAP_THRESHOLD fixed, big blocks are unmapped when freed and RSS tracks use,
    # but every allocation then faults fresh pages, which would slow the timings down.
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
    peaks = {size: {name: rss_peak_mib(run) for name, run in runs[size].items()} for size in args.sizes}
    peak_gflops = {size: 2 * 2048**3 / ms[size]["matmul"] / 1e6 for size in args.sizes}
    print(
        f"fp32 CPU, {args.threads} threads, x4, official sizes (10 groups x 20 blocks, 64 features), "
        f"median of {args.repeat} after 1 warm-up, all networks interleaved, freed memory kept as the "
        f"engine keeps it (sr.allocator); torch {torch.__version__}; "
        f"load average {load_before:.1f} before timing, {os.getloadavg()[0]:.1f} after; fp32 matmul peak "
        + ", ".join(f"{peak_gflops[size]:.0f} GFLOP/s (at {size}x{size})" for size in args.sizes)
    )
    print(
        "| network | input | ms | compared with | its ms | speed-up | GFLOP | % of peak | peak MiB | "
        "its peak MiB | max diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rows = [("HAN", "our RCAN (no HAN package)", "RCAN", "-")] if "HAN" in cnns else []
        if "RCAN" in cnns and reference is not None:
            diff = (runs[size]["RCAN"]() - runs[size]["spandrel RCAN"]()).abs().max().item()
            rows.insert(0, ("RCAN", "spandrel RCAN", "spandrel RCAN", f"{diff:.1e}"))
        for name, (_, official) in transformers.items():
            if official is not None:
                diff = (runs[size][name]() - runs[size][f"official {name}"]()).abs().max().item()
                rows.append((name, f"official {name}", f"official {name}", f"{diff:.1e}"))
        for name, label, other, diff_text in rows:
            share = 100 * gflop[size][name] / ms[size][name] * 1000 / peak_gflops[size]
            print(
                f"| {name} | {size}x{size} | {ms[size][name]:.0f} | {label} | {ms[size][other]:.0f} | "
                f"{ms[size][other] / ms[size][name]:.2f} | {gflop[size][name]:.1f} | {share:.0f} % | "
                f"{peaks[size][name]:.0f} | {peaks[size][other]:.0f} | {diff_text} |"
            )


if __name__ == "__main__":
    main()
