"""ONNX Runtime (and OpenVINO, if installed) against PyTorch eager, fp32 CPU, per family (light presets and
PAN): same weights, same input.

Each network is exported once through `sr.onnx.export` (verified against PyTorch). Times: both engines in
this process, calls interleaved (eager, ORT, eager, ORT, ...) after one warm-up each; medians, and the ratio
ORT / eager as the median of each round's ratio, so load that comes and goes on a shared machine hits both
sides of a ratio alike (below 1 means ONNX Runtime is faster). Peak memory: each engine again in a fresh
process of its own, so neither sees the other's heap or ONNX Runtime's arena: the rise of the peak resident
set (VmHWM) over the resident set before the first call, across the warm-up and the timed calls.
OpenVINO (`pip install openvino`: benchmark only, not a dependency of sr) compiles the same ONNX file for its
CPU plugin with fp32 inference precision (on CPUs with bf16 it would otherwise compute in bf16) and the same
thread count; it is timed in the same rounds, with its largest difference from eager.

    python -m benchmarks.onnx [--sizes 64 128] [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

import archs
from benchmarks.memory import rss_peak_mib
from sr.loading import LoadedModel
from sr.onnx.export import export
from sr.onnx.runtime import OrtModule, session


def _openvino(path: Path, threads: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The ONNX file compiled by OpenVINO's CPU plugin in fp32, as a tensor → tensor call; None without it."""
    try:
        import openvino
    except ImportError:
        return None
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    return lambda x: torch.from_numpy(compiled(x.numpy())[0])

CASES = [("PAN", "PAN"), ("SwinIR", "swinir-light"), ("SRFormer", "SRFormer-light"), ("DAT", "DAT-light"),
         ("CAMixerSR", "CAMixerSR-S"), ("CAMixerSR", "CAMixerSR-light")]
ENGINES = ("eager", "ort")
ROOT = Path(__file__).resolve().parents[1]


def _network(family_name: str, preset: str) -> LoadedModel:
    """The preset at x4 with its seeded random initialisation (the same weights in every process)."""
    family = archs.get_family(family_name)
    params = {k: v for k, v in family.presets[preset].items() if k != "img_size"} | {"scale": 4}
    torch.manual_seed(0)
    model = family.build(**params).eval()
    return LoadedModel(model, family.name, 4, params, family.multiple_of, False, False, preset)


def _interleaved_ms(calls: list[Callable[[], object]], repeat: int) -> list[list[float]]:
    """Milliseconds of each call in `repeat` rounds that time the calls in turn, after one warm-up each."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, spent in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            spent.append(1000 * (time.perf_counter() - start))
    return times


def _peak_mib(engine: str, family_name: str, preset: str, onnx_path: Path, size: int,
              args: argparse.Namespace) -> float:
    """Peak memory that `engine` adds over the warm-up and timed calls, measured in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.onnx", "--peak-of", engine, "--case", family_name, preset,
               "--onnx", str(onnx_path), "--sizes", str(size), "--repeat", str(args.repeat),
               "--threads", str(args.threads)]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return float(run.stdout.split()[-1])


def _peak_child(args: argparse.Namespace) -> None:
    """Child process of `_peak_mib`: load one engine, run it at the one size given, print the peak it
    added in MiB."""
    torch.set_num_threads(args.threads)
    engine = _network(*args.case).model if args.peak_of == "eager" else OrtModule(session(args.onnx))
    x = torch.rand(1, 3, args.sizes[0], args.sizes[0])
    with torch.inference_mode():
        print(f"{rss_peak_mib(lambda: [engine(x) for _ in range(args.repeat + 1)]):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-of", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        _peak_child(args)
        return
    torch.set_num_threads(args.threads)
    print(f"fp32 CPU, {args.threads} threads, x4, {args.repeat} interleaved rounds after a warm-up: medians")
    header = ("network", "size", "eager ms", "ORT ms", "ORT/eager", "eager peak MiB", "ORT peak MiB", "OV ms",
              "OV/eager", "OV diff")
    print("{:<18}{:>6}{:>11}{:>10}{:>11}{:>16}{:>14}{:>9}{:>10}{:>9}".format(*header))
    with tempfile.TemporaryDirectory() as tmp:
        for family_name, preset in CASES:
            net = _network(family_name, preset)
            path = Path(tmp) / f"{preset}.onnx"
            export(net, path)
            ort = OrtModule(session(path))
            openvino = _openvino(path, args.threads)
            for size in args.sizes:
                x = torch.rand(1, 3, size, size)
                calls = [partial(net.model, x), partial(ort, x)]
                if openvino:
                    calls.append(partial(openvino, x))
                with torch.inference_mode():
                    eager_ms, ort_ms, *ov_ms = _interleaved_ms(calls, args.repeat)
                    ov = "{:>9}{:>10}{:>9}".format("-", "-", "-")
                    if openvino:
                        ov_ratio = statistics.median(o / e for e, o in zip(eager_ms, ov_ms[0], strict=True))
                        diff = (openvino(x) - net.model(x)).abs().max().item()
                        ov = f"{statistics.median(ov_ms[0]):>9.1f}{ov_ratio:>10.2f}{diff:>9.1e}"
                ratio = statistics.median(o / e for e, o in zip(eager_ms, ort_ms, strict=True))
                eager_mib, ort_mib = (_peak_mib(e, family_name, preset, path, size, args) for e in ENGINES)
                print(f"{preset:<18}{size:>6}{statistics.median(eager_ms):>11.1f}"
                      f"{statistics.median(ort_ms):>10.1f}{ratio:>11.2f}{eager_mib:>16.0f}{ort_mib:>14.0f}"
                      + ov, flush=True)


if __name__ == "__main__":
    main()
