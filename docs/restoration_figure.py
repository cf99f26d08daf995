"""Draws docs/restoration.png, the README's before/after picture of the bundled restoration models.

Sample photos from scikit-image (no benchmark data in the repository): the astronaut (NASA, public domain)
with white noise of sigma 25 stored as an 8-bit photo, and the coffee cup (scikit-image's CC0 sample) saved
as a JPEG at quality 10; each beside the bundled model's output, as crops at twice their size.

    python docs/restoration_figure.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

import sr
from sr.data.degradations import add_noise, jpeg
from sr.upscale import run_pixels

OUT = Path(__file__).resolve().parent / "restoration.png"


def _panel(pixels: np.ndarray, label: str, box: tuple[int, int, int, int], zoom: int = 2) -> Image.Image:
    top, left, height, width = box
    crop = np.clip(np.round(pixels[top : top + height, left : left + width] * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(crop).resize((width * zoom, height * zoom), Image.Resampling.NEAREST)
    ImageDraw.Draw(image).text((8, 6), label, fill=(255, 255, 0))
    return image


def main() -> None:
    rng = np.random.default_rng(0)
    astronaut = data.astronaut().astype(np.float32) / 255
    noisy = add_noise(astronaut, rng.normal(0, 25 / 255, astronaut.shape), quantize=True)
    denoised = run_pixels(sr.load_model("denoise"), noisy)
    coffee = data.coffee()
    compressed = jpeg(coffee, 10).astype(np.float32) / 255
    restored = run_pixels(sr.load_model("jpeg"), compressed)
    panels = [
        _panel(noisy, "noisy (sigma 25, 8-bit)", (30, 150, 160, 200)),
        _panel(denoised, "sr restore --task denoise", (30, 150, 160, 200)),
        _panel(compressed, "JPEG quality 10", (90, 180, 160, 200)),
        _panel(restored, "sr restore --task jpeg", (90, 180, 160, 200)),
    ]
    width, height = panels[0].size
    sheet = Image.new("RGB", (2 * width + 8, 2 * height + 8), "white")
    for i, panel in enumerate(panels):
        sheet.paste(panel, ((i % 2) * (width + 8), (i // 2) * (height + 8)))
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
