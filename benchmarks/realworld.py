"""The real-world x4 model against the bicubic-trained ones, on a held-out set degraded like real photos.

`make` builds the held-out set once: every HR image of Set14 and B100 (evaluation sets, never trained on),
cropped to a multiple of 4 and degraded by Real-ESRGAN's second-order pipeline (`sr.data.second_order`, the
settings of train_realesrnet_x4plus.yml, no unsharp masking) with a fixed seed per image; the LR files and
their SHA256SUMS go to the output folder. `score` (the default) runs models over it and over plain bicubic
Set5 and prints PSNR-Y / SSIM-Y (border 4, as the SR tables), models interleaved per image:

    python -m benchmarks.realworld make [--out datasets/RealworldHeldout]
    python -m benchmarks.realworld score [--held-out datasets/RealworldHeldout] [-m realworld default PAN.pth]
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

import sr
from sr.data import second_order
from sr.evaluate import as_rgb, find_pairs, score_image
from sr.imageio import Image, read_image, write_image
from sr.options import DatasetOptions, SecondOrderOptions

SEED = 20261128
SETS = ("Set14", "B100")
SCALE = 4


def _shared() -> Path:
    return Path(os.environ.get("SR_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def held_out_hr(shared: Path) -> list[tuple[str, Path]]:
    """(set/name, HR path) of the held-out images, in a fixed order."""
    found = []
    for name in SETS:
        folder = shared / "data" / "benchmarks" / name / "HR"
        found += [(f"{name}/{p.stem}", p) for p in sorted(folder.iterdir()) if p.suffix.lower() == ".png"]
    return found


def degrade_one(hr: np.ndarray, index: int) -> np.ndarray:
    """The held-out LR of one HR image (H x W x 3 floats): the pipeline seeded by (SEED, index)."""
    rng = np.random.default_rng([SEED, index])
    h, w = hr.shape[:2]
    hr = np.ascontiguousarray(hr[: h - h % SCALE, : w - w % SCALE])
    kernels = second_order.draw_kernels(rng, second_order.kernel_settings(DatasetOptions(name="held-out")))
    return second_order.degrade(hr, rng, SecondOrderOptions(gt_usm=False), kernels, SCALE)


def make(out: Path, shared: Path) -> None:
    sums = []
    for index, (name, path) in enumerate(held_out_hr(shared)):
        lr = degrade_one(as_rgb(read_image(path).pixels), index)
        target = out / "LR" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, Image(pixels=lr, bit_depth=8))  # lr is on 8-bit levels already
        sums.append(f"{hashlib.sha256(target.read_bytes()).hexdigest()}  LR/{name}.png")
    (out / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    print(f"{len(sums)} LR images in {out}")


def score(held_out: Path, models: list[str], shared: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    nets = {m: sr.load_model(m, scale=SCALE) for m in models}
    pairs = [(name, hr, held_out / "LR" / f"{name}.png") for name, hr in held_out_hr(shared)]
    set5 = shared / "data" / "benchmarks" / "Set5"
    plain = [(f"Set5/{n}", hr, lr) for n, hr, lr in find_pairs(set5 / "HR", set5 / "LR_bicubic" / "X4", "{}")]
    print(
        f"threads {threads}, load {os.getloadavg()[0]:.2f}; held-out: {len(pairs)} images of "
        f"{' + '.join(SETS)}"
    )
    for label, group in (("held-out (degraded Set14 + B100)", pairs), ("plain bicubic Set5", plain)):
        totals = {m: [] for m in models}
        for _, hr_path, lr_path in group:
            hr, lr = read_image(hr_path), read_image(lr_path)
            for m, net in nets.items():
                result, _ = score_image(net, lr, hr, SCALE)
                totals[m].append((result.psnr, result.ssim))
        print(f"{label}:")
        for m in models:
            p, s = np.mean(totals[m], axis=0)
            print(f"  {m:<40} PSNR-Y {p:.2f} dB  SSIM-Y {s:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", choices=("make", "score"), default="score")
    parser.add_argument(
        "--out", "--held-out", dest="folder", type=Path, default=Path("datasets/RealworldHeldout")
    )
    parser.add_argument("-m", "--models", nargs="+", default=["realworld", "default"])
    parser.add_argument("--pan-official", action="store_true", help="also score ../shared/weights' PAN x4")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    shared = _shared()
    if args.action == "make":
        make(args.folder, shared)
        return
    models = list(args.models)
    if args.pan_official:
        models.append(str(shared / "weights" / "PAN" / "PANx4_DF2K.pth"))
    score(args.folder, models, shared, args.threads)


if __name__ == "__main__":
    main()
