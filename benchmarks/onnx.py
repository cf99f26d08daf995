"""ONNX Runtime (and OpenVINO, if installed) against PyTorch eager, fp32 CPU, per family (light presets and
PAN): same weights, same input; eager in the engine's layout (NHWC for PAN and CAMixerSR).

Each network is exported once through `sr.onnx.export` (verified against PyTorch). Times: both engines in
this process, calls interleaved (eager, ORT, eager, ORT, ...) after one warm-up each; medians, and the ratio
ORT / eager as the median of each round's ratio, so load that comes and goes on a shared machine hits both
sides of a ratio alike (below 1 means ONNX Runtime is faster). Peak memory: each engine again in a fresh
process of its own, so neither sees the other's heap or ONNX Runtime's arena: the rise of the peak resident
set (VmHWM) over the resident set before the first call, across the warm-up and the timed calls.
OpenVINO (`pip install openvino`: benchmark only, not a dependency of sr) compiles the same ONNX file for its
CPU plugin with fp32 inference precision (on CPUs with bf16 it would otherwise compute in bf16) and the same
thread count; it is timed against eager in a second table, after every ONNX Runtime round (created in the
same process first, its pinned, spinning worker threads slowed ONNX Runtime by up to 2x), with its largest
difference from eager.

    python -m benchmarks.onnx [--sizes 64 128] [--repeat 5] [--threads 2] [--only CAMixerSR-S ...]
"""

from __future__ import annotations

import argparse
import importlib.util
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
from sr.allocator import keep_freed_memory
from sr.loading import LoadedModel, channels_last_weights
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
    """The preset at x4 with its seeded random initialisation (the same weights in every process), in the
    engine's layout (NHWC weights for the families that run so, as `sr.load_model` gives them)."""
    family = archs.get_family(family_name)
    params = {k: v for k, v in family.presets[preset].items() if k != "img_size"} | {"scale": 4}
    torch.manual_seed(0)
    model = family.build(**params).eval()
    if family.channels_last:
        channels_last_weights(model)
    layout = {"channels_last": family.channels_last}
    return LoadedModel(model, family.name, 4, params, family.multiple_of, False, False, preset, **layout)


def _eager_input(net: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if net.channels_last else x


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
    x = torch.rand(1, 3, args.sizes[0], args.sizes[0])
    if args.peak_of == "eager":
        net = _network(*args.case)
        engine, x = net.model, _eager_input(net, x)
    else:
        engine = OrtModule(session(args.onnx))
    with torch.inference_mode():
        print(f"{rss_peak_mib(lambda: [engine(x) for _ in range(args.repeat + 1)]):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=[preset for _, preset in CASES], help="presets to run")
    parser.add_argument("--peak-of", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_of:
        _peak_child(args)
        return
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does, for every engine alike
    print(f"fp32 CPU, {args.threads} threads, x4, {args.repeat} interleaved rounds after a warm-up: medians")
    header = ("network", "size", "eager ms", "ORT ms", "ORT/eager", "eager peak MiB", "ORT peak MiB")
    print("{:<18}{:>6}{:>11}{:>10}{:>11}{:>16}{:>14}".format(*header))
    with tempfile.TemporaryDirectory() as tmp:
        exported = []
        for family_name, preset in CASES:
            if args.only and preset not in args.only:
                continue
            net = _network(family_name, preset)
            path = Path(tmp) / f"{preset}.onnx"
            export(net, path)
            exported.append((family_name, preset, net, path))
            ort = OrtModule(session(path))
            for size in args.sizes:
                x = torch.rand(1, 3, size, size)
                with torch.inference_mode():
                    calls = [partial(net.model, _eager_input(net, x)), partial(ort, x)]
                    eager_ms, ort_ms = _interleaved_ms(calls, args.repeat)
                ratio = statistics.median(o / e for e, o in zip(eager_ms, ort_ms, strict=True))
                eager_mib, ort_mib = (_peak_mib(e, family_name, preset, path, size, args) for e in ENGINES)
                print(f"{preset:<18}{size:>6}{statistics.median(eager_ms):>11.1f}"
                      f"{statistics.median(ort_ms):>10.1f}{ratio:>11.2f}{eager_mib:>16.0f}{ort_mib:>14.0f}",
                      flush=True)
        # OpenVINO after every ONNX Runtime round: its pinned, spinning worker threads slowed ONNX Runtime
        # calls made after them in the same process by up to 2x.
        if exported and importlib.util.find_spec("openvino"):
            header = ("network", "size", "eager ms", "OV ms", "OV/eager", "OV diff")
            print("\n{:<18}{:>6}{:>11}{:>9}{:>10}{:>9}".format(*header))
        for _, preset, net, path in exported:
            openvino = _openvino(path, args.threads)
            if openvino is None:
                break
            for size in args.sizes:
                x = torch.rand(1, 3, size, size)
                with torch.inference_mode():
                    calls = [partial(net.model, _eager_input(net, x)), partial(openvino, x)]
                    eager_ms, ov_ms = _interleaved_ms(calls, args.repeat)
                    diff = (openvino(x) - net.model(x)).abs().max().item()
                ratio = statistics.median(o / e for e, o in zip(eager_ms, ov_ms, strict=True))
                print(f"{preset:<18}{size:>6}{statistics.median(eager_ms):>11.1f}{statistics.median(ov_ms):>9.1f}"
                      f"{ratio:>10.2f}{diff:>9.1e}", flush=True)


if __name__ == "__main__":
    main()
