"""What `sr.allocator.keep_freed_memory` is worth: each family preset's fp32 CPU forward with glibc's default
malloc thresholds and with the engine's, in separate processes (the setting cannot be undone in a process)
alternated round by round, so that load changes hit both alike.

Run from the repository root: `python -m benchmarks.allocator [--only NAME ...] [--size 128] [--rounds 5]
[--repeat 5] [--threads 2]`. Each round starts one process per setting, which times `--repeat` forwards
after one warm-up (random weights, seeded smooth input, the engine's layout); the table gives the median
over all rounds' forwards and the minor page faults per forward.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from archs import FAMILIES


def measure(preset: str, size: int, repeat: int, threads: int, keep: bool) -> dict:
    """Times of `repeat` forwards of `preset` (after one warm-up) and page faults per forward."""
    if keep:
        from sr.allocator import keep_freed_memory

        assert keep_freed_memory(), "mallopt failed"
    torch.set_num_threads(threads)
    family = next(f for f in FAMILIES if preset in f.presets)
    torch.manual_seed(0)
    model = family.build(**family.presets[preset]).eval()
    noise = torch.rand(1, 3, size // 4, size // 4, generator=torch.Generator().manual_seed(0))
    x = torch.nn.functional.interpolate(noise, size=size, mode="bicubic").clamp(0, 1)
    if family.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        model(x)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append(1000 * (time.perf_counter() - start))
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / repeat
    return {"times": times, "faults": faults}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    presets = [p for f in FAMILIES for p in f.presets]
    parser.add_argument("--only", nargs="+", choices=presets, metavar="PRESET", help=", ".join(presets))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "KEEP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = measure(args.child[0], args.size, args.repeat, args.threads, args.child[1] == "1")
        print(json.dumps(result))
        return
    load = os.getloadavg()[0]
    print(f"fp32 CPU, {args.threads} threads, {args.size}x{args.size}, {args.rounds} rounds x {args.repeat} "
          f"forwards per setting, processes alternated; load average {load:.1f} before")
    print("| preset | glibc default ms | kept ms | default / kept | faults per forward: default / kept |")
    print("|---|---|---|---|---|")
    for preset in args.only or presets:
        runs: dict[str, list[float]] = {"0": [], "1": []}
        faults: dict[str, list[float]] = {"0": [], "1": []}
        for _ in range(args.rounds):
            for keep in runs:
                command = [sys.executable, "-m", "benchmarks.allocator", "--size", str(args.size), "--repeat",
                           str(args.repeat), "--threads", str(args.threads), "--child", preset, keep]
                out = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                runs[keep] += out["times"]
                faults[keep].append(out["faults"])
        default, kept = statistics.median(runs["0"]), statistics.median(runs["1"])
        print(f"| {preset} | {default:.1f} | {kept:.1f} | {default / kept:.2f} | "
              f"{statistics.median(faults['0']):.0f} / {statistics.median(faults['1']):.0f} |")
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
