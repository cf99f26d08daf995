"""Benchmark evaluation: super-resolve paired LR/HR sets and score PSNR/SSIM on Y as BasicSR and MATLAB do.

Protocol (REFERENCE §2): output clamped and rounded to uint8, HR cropped top-left to scale × LR size,
`crop_border` pixels removed on each side, per-image scores averaged; grayscale images are replicated to
RGB before the network and scored on the Y of the RGB output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sr.imageio import IMAGE_EXTENSIONS, Image, read_image, to_uint8, write_image
from sr.loading import LoadedModel
from sr.metrics import psnr, ssim

if TYPE_CHECKING:
    import torch

DEFAULT_ROOTS = ("datasets", "../shared/data/benchmarks")


class DatasetError(ValueError):
    """A benchmark set that cannot be found or paired."""


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class SetResult:
    name: str
    scale: int
    scores: list[ImageScore] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return float(np.mean([s.psnr for s in self.scores]))

    @property
    def ssim(self) -> float:
        return float(np.mean([s.ssim for s in self.scores]))


def dataset_dirs(name: str, scale: int, root: str | os.PathLike | None = None) -> tuple[Path, Path | None]:
    """(HR folder, LR folder) of a set laid out as `<root>/<name>/HR` and `<root>/<name>/LR_bicubic/X<s>`.

    A set found with HR images but no `LR_bicubic/X<s>` (Urban100 is often shipped with X4 only) gives None
    for the LR folder: its LR images are then made from the HR as MATLAB does (`matlab_lr`).
    """
    roots = [Path(root)] if root else [Path(r) for r in (os.environ.get("SR_DATASETS"), *DEFAULT_ROOTS) if r]
    for base in roots:
        hr, lr = base / name / "HR", base / name / "LR_bicubic" / f"X{scale}"
        if hr.is_dir() and lr.is_dir():
            return hr, lr
    for base in roots:
        if (base / name / "HR").is_dir():
            return base / name / "HR", None
    looked = ", ".join(str(b / name / "HR") for b in roots)
    raise DatasetError(f"{name} x{scale}: not found (looked for {looked}; see datasets/README.md)")


def matlab_lr(hr: Image, scale: int) -> Image:
    """The benchmark LR of an HR image: its 8-bit pixels cropped top-left to a multiple of `scale`, then
    MATLAB's `imresize(hr, 1/scale, 'bicubic')` (sr.data.imresize, bit-exact to MATLAB's LR files)."""
    from sr.data.imresize import imresize

    pixels = to_uint8(hr.pixels)
    h, w = pixels.shape[0] // scale * scale, pixels.shape[1] // scale * scale
    if not h or not w:
        raise DatasetError(f"HR image {pixels.shape[1]}x{pixels.shape[0]} is smaller than the scale {scale}")
    lr = imresize(pixels[:h, :w], 1 / scale)
    return Image(lr.reshape(h // scale, w // scale, -1).astype(np.float32) / 255)


def find_pairs(
    hr_dir: Path, lr_dir: Path | None, filename_tmpl: str = "{}"
) -> list[tuple[str, Path, Path | None]]:
    """(name, HR file, LR file) for each HR image whose LR partner exists, sorted by name; the LR file is
    None for every image when `lr_dir` is None (LR made from the HR, see `dataset_dirs`)."""
    lr_files = {} if lr_dir is None else {
        p.stem: p for p in lr_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
    }
    pairs = []
    for hr in sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        lr = lr_files.get(filename_tmpl.format(hr.stem))
        if lr is None and lr_dir is not None:
            raise DatasetError(f"{hr}: no LR partner named {filename_tmpl.format(hr.stem)}.* in {lr_dir}")
        pairs.append((hr.stem, hr, lr))
    if not pairs:
        raise DatasetError(f"{hr_dir}: holds no images")
    return pairs


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """H x W x C pixels with gray (C == 1) replicated to three channels."""
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def super_resolve_pair(
    net: LoadedModel,
    lr: Image,
    hr: Image,
    *,
    tile: int | None = None,
    tile_overlap: int = 64,
    dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 RGB output for `lr` (`dtype`: compute precision, None = the engine's default), and the uint8
    RGB `hr` cropped top-left to the output's size."""
    import torch

    from sr.upscale import image_to_tensor, tensor_to_image, upscale_tensor

    out = upscale_tensor(
        net, image_to_tensor(as_rgb(lr.pixels)), tile=tile, tile_overlap=tile_overlap, dtype=dtype
    )
    sr_u8 = to_uint8(tensor_to_image(out.to(torch.float32)))
    h, w = sr_u8.shape[:2]
    hr_u8 = to_uint8(as_rgb(hr.pixels)[:h, :w])
    if hr_u8.shape[:2] != (h, w):
        raise DatasetError(
            f"HR image is smaller ({hr.pixels.shape[1]}x{hr.pixels.shape[0]}) than scale x LR ({w}x{h})"
        )
    return sr_u8, hr_u8


def score_image(
    net: LoadedModel,
    lr: Image,
    hr: Image,
    crop_border: int,
    *,
    tile: int | None = None,
    tile_overlap: int = 64,
    dtype: torch.dtype | None = None,
) -> tuple[ImageScore, np.ndarray]:
    """PSNR/SSIM of one super-resolved LR image against its HR, and the uint8 RGB output."""
    sr_u8, hr_u8 = super_resolve_pair(net, lr, hr, tile=tile, tile_overlap=tile_overlap, dtype=dtype)
    return ImageScore(
        "", psnr(sr_u8, hr_u8, crop_border=crop_border), ssim(sr_u8, hr_u8, crop_border=crop_border)
    ), sr_u8


def evaluate_set(
    net: LoadedModel,
    name: str,
    pairs: list[tuple[str, Path, Path | None]],
    *,
    crop_border: int | None = None,
    tile: int | None = None,
    tile_overlap: int = 64,
    dtype: torch.dtype | None = None,
    save_dir: Path | None = None,
    on_image: Callable[[ImageScore], None] | None = None,
) -> SetResult:
    """Score every pair of a set (an LR file None: made from its HR by `matlab_lr`); optionally save the
    outputs as PNG under `save_dir`."""
    result = SetResult(name, net.scale)
    border = net.scale if crop_border is None else crop_border
    for stem, hr_path, lr_path in pairs:
        hr = read_image(hr_path)
        lr = matlab_lr(hr, net.scale) if lr_path is None else read_image(lr_path)
        score, out = score_image(net, lr, hr, border, tile=tile, tile_overlap=tile_overlap, dtype=dtype)
        score.name = stem
        result.scores.append(score)
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            write_image(save_dir / f"{stem}.png", Image(out.astype(np.float32) / 255))
        if on_image:
            on_image(score)
    return result
