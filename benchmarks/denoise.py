"""The bundled `denoise` model against CBM3D (the `bm3d` package, Mäkinen et al.), the classical colour
denoiser a CPU user would otherwise pick, on the same noisy images in one process.

Noise: SwinIR's test protocol (seed 0 per image, float, unclipped; `--clip-noise` stores it as an 8-bit photo
would). CBM3D is told the true sigma (it is not blind; the model is). Both outputs are clamped and rounded to
8 bits and scored on RGB (PSNR/SSIM, no border). Images alternate model, CBM3D, model, ... so load that comes
and goes hits both; times are per image, reported as seconds per megapixel (median), with the load average.

`bm3d` is free for non-commercial use only: the benchmark installs it, the project never depends on it.

    pip install bm3d && python -m benchmarks.denoise [--sigma 25] [--dataset CBSD68] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

import sr
from sr.imageio import read_image, to_uint8
from sr.metrics import psnr, ssim
from sr.tasks import Denoise, find_set
from sr.upscale import run_pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=25)
    parser.add_argument("--dataset", default="CBSD68")
    parser.add_argument("--model", default="denoise")
    parser.add_argument("--limit", type=int, help="only the first N images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clip-noise", action="store_true")
    args = parser.parse_args()
    try:
        import bm3d
    except ImportError:
        raise SystemExit(
            "benchmarks.denoise needs the bm3d package: pip install bm3d (non-commercial)"
        ) from None
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    net = sr.load_model(args.model)
    task = Denoise(args.sigma, args.clip_noise)
    files = find_set(args.dataset).files[: args.limit]
    scores: dict[str, list[tuple[float, float]]] = {"model": [], "cbm3d": [], "input": []}
    per_mp: dict[str, list[float]] = {"model": [], "cbm3d": []}
    load = [os.getloadavg()[0]]
    for i, path in enumerate(files):
        clean = to_uint8(read_image(path).pixels)
        noisy = task.degrade(clean)
        megapixels = clean.shape[0] * clean.shape[1] / 1e6
        runs = {
            "model": lambda noisy=noisy: run_pixels(net, noisy),
            "cbm3d": lambda noisy=noisy: bm3d.bm3d_rgb(noisy.astype(np.float64), args.sigma / 255),
        }
        for name in ("model", "cbm3d") if i % 2 == 0 else ("cbm3d", "model"):
            start = time.perf_counter()
            out = runs[name]()
            per_mp[name].append((time.perf_counter() - start) / megapixels)
            out = to_uint8(np.clip(out, 0, 1))
            scores[name].append((psnr(out, clean, y_channel=False), ssim(out, clean, y_channel=False)))
        degraded = to_uint8(noisy)
        scores["input"].append(
            (psnr(degraded, clean, y_channel=False), ssim(degraded, clean, y_channel=False))
        )
        load.append(os.getloadavg()[0])
        print(f"{path.name:<14} " + "  ".join(f"{k} {v[-1][0]:.2f}" for k, v in scores.items()), flush=True)
    print(
        f"\n{args.dataset}, sigma {args.sigma:g}{' (clipped, 8-bit)' if args.clip_noise else ''}, "
        f"{len(files)} images, {args.threads} threads, load average {min(load):.1f}-{max(load):.1f}"
    )
    print(f"{'':<28} {'PSNR':>8} {'SSIM':>7} {'s/MP (median)':>14}")
    labels = {
        "input": "noisy input",
        "cbm3d": "CBM3D (bm3d, sigma given)",
        "model": f"{args.model} ({net.family})",
    }
    for name in ("input", "cbm3d", "model"):
        p, s = np.mean([x[0] for x in scores[name]]), np.mean([x[1] for x in scores[name]])
        time_text = f"{statistics.median(per_mp[name]):14.2f}" if name in per_mp else f"{'':>14}"
        print(f"{labels[name]:<28} {p:8.4f} {s:7.4f} {time_text}")
    ratios = [c / m for c, m in zip(per_mp["cbm3d"], per_mp["model"], strict=True)]
    ratio = statistics.median(ratios)
    print(f"model faster than CBM3D per megapixel: {ratio:.2f}x (median of per-image ratios)")


if __name__ == "__main__":
    main()
