"""The exact ops Histoformer and HOGformer spend time in, ours against torch's, at Histoformer's shapes for a
128x128 input: value sorts (`kernels.sort` vs torch.sort) and the feed-forward pixel shuffles
(`archs.blocks.pixel_shuffle`/`pixel_unshuffle` vs F.pixel_shuffle/F.pixel_unshuffle).

Run from the repository root: `python -m benchmarks.histogram_ops [--repeat 9] [--threads 2]`. Each pair runs
call by call, interleaved, on the same tensor (sorts: half of each level's channels along the height, then
the width, and every channel's positions by value; shuffles: each level's feed-forward projection out and
back); printed: medians, speed-up (torch's time / ours) and whether the outputs agree bit for bit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from archs.blocks import pixel_shuffle, pixel_unshuffle
from kernels.sort import sort

LEVELS = [(36, 128), (72, 64), (144, 32), (288, 16)]  # Histoformer's channels and side per level, 128x128 in
HIDDEN = 2.667  # its feed-forward expansion


def cases() -> list[tuple[str, tuple[int, ...], Callable, Callable]]:
    """(name, input shape, torch's op, ours) for each sort and shuffle of one Histoformer forward level."""
    found = []
    for level, (channels, side) in enumerate(LEVELS, start=1):
        hidden = int(channels * HIDDEN)
        for what, shape, dim in [
            ("sort height", (1, channels // 2, side, side), -2),
            ("sort width", (1, channels // 2, side, side), -1),
            ("sort values", (1, channels, side * side), -1),
        ]:
            found.append((f"L{level} {what}", shape, partial(torch.sort, dim=dim), partial(sort, dim=dim)))
        found.append((f"L{level} pixel_shuffle", (1, hidden * 2, side, side),
                      partial(F.pixel_shuffle, upscale_factor=2), partial(pixel_shuffle, factor=2)))
        found.append((f"L{level} pixel_unshuffle", (1, hidden // 2, side * 2, side * 2),
                      partial(F.pixel_unshuffle, downscale_factor=2), partial(pixel_unshuffle, factor=2)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(f"# CPU, {args.threads} threads, median of {args.repeat} interleaved; load {load:.1f}")
    print("| op | input | torch ms | ours ms | speed-up | equal |")
    print("|---|---|---|---|---|---|")
    totals: dict[str, dict[str, float]] = {}
    for name, shape, theirs, ours in cases():
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        x = (x * 64).round() / 64  # ties, as feature maps of photos have
        times: dict[str, list[float]] = {"torch": [], "ours": []}
        for _ in range(args.repeat + 1):
            for label, function in (("torch", theirs), ("ours", ours)):
                start = time.perf_counter()
                function(x)
                times[label].append(time.perf_counter() - start)
        medians = {label: statistics.median(t[1:]) * 1e3 for label, t in times.items()}
        want, got = theirs(x), ours(x)
        pairs = zip(want, got, strict=True) if isinstance(want, tuple) else [(want, got)]
        equal = all(torch.equal(a, b) for a, b in pairs)
        kind = totals.setdefault(name.split()[1], {"torch": 0.0, "ours": 0.0})
        for label in kind:
            kind[label] += medians[label]
        print(f"| {name} | {tuple(shape)} | {medians['torch']:.2f} | {medians['ours']:.2f} | "
              f"{medians['torch'] / medians['ours']:.2f} | {'yes' if equal else 'NO'} |")
    for kind, total in totals.items():
        ratio = total["torch"] / total["ours"]
        print(f"| all {kind} | | {total['torch']:.2f} | {total['ours']:.2f} | {ratio:.2f} | |")


if __name__ == "__main__":
    main()
