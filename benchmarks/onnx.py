"""ONNX Runtime against PyTorch eager, fp32 CPU, per family (light presets and PAN): same weights, same
input, same process, interleaved calls.

Each network is exported once through `sr.onnx.export` (verified against PyTorch), then both engines run
the same input. Printed: median times, the ratio ORT / eager (below 1 means ONNX Runtime is faster) and the
peak resident memory each adds during one call.

    python -m benchmarks.onnx [--sizes 64 128] [--repeat 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

import archs
from benchmarks.memory import rss_peak_mib
from sr.loading import LoadedModel
from sr.onnx.export import export
from sr.onnx.runtime import OrtModule, session

CASES = [("PAN", "PAN"), ("SwinIR", "swinir-light"), ("SRFormer", "SRFormer-light"), ("DAT", "DAT-light"),
         ("CAMixerSR", "CAMixerSR-S"), ("CAMixerSR", "CAMixerSR-light")]


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"fp32 CPU, {args.threads} threads, median of {args.repeat} after one warm-up, x4")
    header = ("network", "size", "eager ms", "ORT ms", "ORT/eager", "eager MiB", "ORT MiB")
    print("{:<18}{:>6}{:>11}{:>10}{:>11}{:>11}{:>9}".format(*header))
    with tempfile.TemporaryDirectory() as tmp:
        for family_name, preset in CASES:
            family = archs.get_family(family_name)
            params = {k: v for k, v in family.presets[preset].items() if k != "img_size"} | {"scale": 4}
            torch.manual_seed(0)
            model = family.build(**params).eval()
            net = LoadedModel(model, family.name, 4, params, family.multiple_of, False, False, preset)
            path = Path(tmp) / f"{preset}.onnx"
            export(net, path)
            ort = OrtModule(session(path))
            for size in args.sizes:
                x = torch.rand(1, 3, size, size)
                eager, runtime = partial(model, x), partial(ort, x)
                with torch.inference_mode():
                    eager_ms, ort_ms = _median_ms(eager, args.repeat), _median_ms(runtime, args.repeat)
                    eager_mib, ort_mib = rss_peak_mib(eager), rss_peak_mib(runtime)
                print(f"{preset:<18}{size:>6}{eager_ms:>11.1f}{ort_ms:>10.1f}{ort_ms / eager_ms:>11.2f}"
                      f"{eager_mib:>11.0f}{ort_mib:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
