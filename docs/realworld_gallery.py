"""Draws docs/realworld.png, the README's gallery of the bundled real-world model on real photos.

Inputs: crops of RealSRSet (BSRGAN's real low-quality photos, as SwinIR's `testsets/RealSRSet+5images`;
the images belong to their authors, shown here as small crops for comparison, never trained on), from
../shared/data/realworld/RealSRSet. Each row: the input enlarged 4x by pixel repetition, the bicubic-trained
default model, the real-world model (`sr upscale -m realworld`).

    python docs/realworld_gallery.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import sr
from sr.imageio import read_image
from sr.upscale import run_pixels

OUT = Path(__file__).resolve().parent / "realworld.png"
# image, (top, left) of a 48 x 48 LR crop
CROPS = {
    "oldphoto2.png": (40, 56),
    "comic1.png": (30, 36),
    "dog.png": (70, 70),
    "building.png": (50, 20),
    "chip.png": (36, 30),
}
SIZE, SCALE = 48, 4


def _panel(pixels: np.ndarray, label: str) -> Image.Image:
    image = Image.fromarray(np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8))
    if image.size[0] < SIZE * SCALE:
        image = image.resize((SIZE * SCALE, SIZE * SCALE), Image.Resampling.NEAREST)
    ImageDraw.Draw(image).text((6, 4), label, fill=(255, 255, 0))
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    args = parser.parse_args()
    folder = args.shared / "data" / "realworld" / "RealSRSet"
    models = {"bicubic-trained default": sr.load_model("default"), "realworld": sr.load_model("realworld")}
    rows = []
    for name, (top, left) in CROPS.items():
        pixels = read_image(folder / name).pixels[..., :3]
        pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
        # the networks see some context around the crop, as in a whole image
        pad = 8
        window = pixels[max(0, top - pad) : top + SIZE + pad, max(0, left - pad) : left + SIZE + pad]
        dy, dx = top - max(0, top - pad), left - max(0, left - pad)
        panels = [_panel(pixels[top : top + SIZE, left : left + SIZE], f"input {name}")]
        for label, net in models.items():
            out = run_pixels(net, window)
            crop = out[dy * SCALE : (dy + SIZE) * SCALE, dx * SCALE : (dx + SIZE) * SCALE]
            panels.append(_panel(crop, label))
        rows.append(panels)
    side, gap = SIZE * SCALE, 6
    sheet = Image.new("RGB", (3 * side + 2 * gap, len(rows) * side + (len(rows) - 1) * gap), "white")
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            sheet.paste(panel, (c * (side + gap), r * (side + gap)))
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
