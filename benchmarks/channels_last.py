"""NHWC (channels_last) against the default NCHW layout on CPU, per family: why the engine runs PAN, A2N,
CAMixerSR, RCAN, HAN and SwinIR with channels_last weights and inputs (their `Family.channels_last`,
sr.loading.channels_last_weights).

Run from the repository root: `python -m benchmarks.channels_last [--threads 2] [--repeat 3] [--only PAN]`.
The presets of benchmarks/bf16.py (light at 128x128, full at 64x64, x4), seeded random weights; both layouts
of the same network on the same input, interleaved, median of `--repeat` after one warm-up; max abs
difference of the outputs (random deep stacks amplify rounding, so trained weights are the test's business:
tests/test_upscale_engine.py).
"""

from __future__ import annotations

import argparse
import copy
import os

import torch

import archs
from benchmarks.archs import forward, median_ms
from benchmarks.bf16 import PRESETS, random_model
from sr.loading import channels_last_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="+", help="families to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for family, preset, size in PRESETS:
        if args.only and family not in args.only:
            continue
        nhwc = random_model(family, preset).model  # NHWC weights where the family's flag says so
        model = copy.deepcopy(nhwc)
        for tensor in model.parameters():  # the default layout, whatever the flag
            tensor.data = tensor.data.contiguous()
        nhwc = channels_last_weights(nhwc)
        x = torch.rand(1, 3, size, size)
        x_nhwc = x.contiguous(memory_format=torch.channels_last)
        runs = {"nchw": forward(model, x), "nhwc": forward(nhwc, x_nhwc)}
        ms = median_ms(runs, args.repeat)
        diff = (runs["nchw"]() - runs["nhwc"]()).abs().max().item()
        engine = "yes" if archs.get_family(family).channels_last else "no"
        rows.append(
            f"| {preset} | {size}x{size} | {ms['nchw']:.0f} | {ms['nhwc']:.0f} | "
            f"{ms['nchw'] / ms['nhwc']:.2f} | {diff:.1e} | {engine} |"
        )
        print(rows[-1], flush=True)
    print(
        f"\nfp32 CPU, {args.threads} threads, median of {args.repeat} after 1 warm-up, layouts interleaved; "
        f"torch {torch.__version__}; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print("| network | input | NCHW ms | NHWC ms | speed-up | max abs diff | engine uses NHWC |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
