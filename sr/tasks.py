"""Restoration evaluation tasks: how a clean test image is degraded and scored, as SwinIR's official test
script (`main_test_swinir.py` in JingyunLiang/SwinIR) does it.

- Denoising: noise drawn by numpy's legacy generator seeded with 0 for every image, in OpenCV's BGR order,
  added to the float image and neither clipped nor rounded (`quantize=True` judges the 8-bit photo case
  instead: clipped to [0, 1] and rounded). Scored by PSNR and SSIM on all channels (RGB, or gray), no
  border crop.
- JPEG: the 8-bit image encoded by OpenCV at the quality and decoded. Scored by PSNR, SSIM and PSNR-B on all
  channels, no border crop. The restored image is held to the quantisation intervals of the encoding
  (`sr.jpeg_constraint`, as `sr restore --task jpeg` does with a JPEG file) unless `constrained` is off,
  which gives the network's own output as the official script scores it.

A gray model given a colour test image sees it converted as the official script reads it: OpenCV's gray
(`IMREAD_GRAYSCALE`) for denoising, BT.601 luma for JPEG. A gray test image goes through a colour model
replicated to RGB, its output averaged back (the engine's rule). The output is clamped and rounded to uint8
before scoring, and so is the degraded input, whose scores are reported beside the model's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sr.data.degradations import add_noise, check_quality, check_sigma, jpeg, official_noise, to_gray, to_luma
from sr.imageio import IMAGE_EXTENSIONS, Image, read_image, to_uint8, write_image
from sr.jpeg_constraint import project, quality_table
from sr.loading import LoadedModel
from sr.metrics import psnr, psnrb, ssim
from sr.options import DatasetOptions

if TYPE_CHECKING:
    import torch

METRICS = {
    "psnr": lambda a, b: psnr(a, b, y_channel=False),
    "ssim": lambda a, b: ssim(a, b, y_channel=False),
    "psnrb": lambda a, b: psnrb(a, b),
}


@dataclass(frozen=True)
class Denoise:
    """Additive white Gaussian noise of level `sigma` (0..255 scale)."""

    sigma: float
    quantize: bool = False
    name = "denoise"
    metrics = ("psnr", "ssim")

    def __post_init__(self) -> None:
        check_sigma(self.sigma)

    @property
    def label(self) -> str:
        return f"sigma {self.sigma:g}" + (", clipped to 8 bits" if self.quantize else "")

    def degrade(self, clean: np.ndarray) -> np.ndarray:
        """H x W x C uint8 → the noisy float32 image the model is given."""
        shape = clean.shape if clean.shape[2] == 3 else clean.shape[:2]
        noise = official_noise(shape, self.sigma).reshape(clean.shape)
        return add_noise(clean.astype(np.float32) / np.float32(255), noise, quantize=self.quantize)

    @staticmethod
    def gray(rgb: np.ndarray) -> np.ndarray:
        return to_gray(rgb)

    def refine(self, restored: np.ndarray, degraded: np.ndarray) -> np.ndarray:
        return restored


@dataclass(frozen=True)
class JPEG:
    """JPEG compression at `quality` (1..100) through OpenCV."""

    quality: int
    constrained: bool = True
    name = "jpeg"
    metrics = ("psnr", "ssim", "psnrb")

    def __post_init__(self) -> None:
        check_quality(self.quality)

    @property
    def label(self) -> str:
        return f"quality {self.quality}" + (", constrained" if self.constrained else "")

    def degrade(self, clean: np.ndarray) -> np.ndarray:
        return jpeg(clean, self.quality).astype(np.float32) / np.float32(255)

    @staticmethod
    def gray(rgb: np.ndarray) -> np.ndarray:
        return to_luma(rgb)

    def refine(self, restored: np.ndarray, degraded: np.ndarray) -> np.ndarray:
        """The restored image held to the encoding's quantisation intervals (when `constrained`)."""
        return project(restored, degraded, quality_table(self.quality)) if self.constrained else restored


Task = Denoise | JPEG


@dataclass
class EvalSet:
    """Clean test images; `gray` set for gray sets derived from colour files (BSD68 from CBSD68)."""

    name: str
    files: list[Path]
    gray: Callable[[np.ndarray], np.ndarray] | None = None


def matlab_rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 → H x W x 1 uint8 as MATLAB's `rgb2gray` (its weights, rounded half away from 0)."""
    gray = rgb.astype(np.float64) @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.floor(gray + 0.5).astype(np.uint8)[..., None]


@dataclass
class ImageScores:
    name: str
    degraded: dict[str, float]
    restored: dict[str, float]


@dataclass
class RestorationResult:
    name: str
    task: Task
    channels: int  # of the model
    scores: list[ImageScores] = field(default_factory=list)

    def mean(self, which: str) -> dict[str, float]:
        """Set means of the metrics, of the 'degraded' inputs or the 'restored' outputs."""
        return {m: float(np.mean([getattr(s, which)[m] for s in self.scores])) for m in self.task.metrics}


def clean_image(path: Path, task: Task, channels: int, gray: Callable | None = None) -> np.ndarray:
    """A clean test image as H x W x C uint8: a gray set's conversion (`gray`) if it has one; colour turned
    gray for gray models by the task's rule; gray images stay gray."""
    clean = to_uint8(read_image(path).pixels)
    if clean.shape[2] == 3 and gray is not None:
        return gray(clean)
    return task.gray(clean) if channels == 1 and clean.shape[2] == 3 else clean


def score(restored: np.ndarray, clean: np.ndarray, task: Task) -> dict[str, float]:
    return {m: METRICS[m](restored, clean) for m in task.metrics}


def evaluate_restoration(
    net: LoadedModel,
    test_set: EvalSet,
    task: Task,
    *,
    tile: int | None = None,
    tile_overlap: int = 64,
    dtype: torch.dtype | None = None,
    save_dir: Path | None = None,
    on_image: Callable[[ImageScores], None] | None = None,
) -> RestorationResult:
    """Degrade each clean image, restore it (`dtype`: the engine's compute precision, None = its default), and
    score input and output against the clean image."""
    from sr.upscale import run_pixels

    result = RestorationResult(test_set.name, task, net.in_channels)
    for path in test_set.files:
        clean = clean_image(path, task, net.in_channels, test_set.gray)
        degraded = task.degrade(clean)
        output = run_pixels(net, degraded, tile=tile, tile_overlap=tile_overlap, dtype=dtype)
        restored = to_uint8(task.refine(output, degraded))
        scores = ImageScores(path.stem, score(to_uint8(degraded), clean, task), score(restored, clean, task))
        result.scores.append(scores)
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            write_image(save_dir / f"{path.stem}.png", Image(restored.astype(np.float32) / 255))
        if on_image:
            on_image(scores)
    return result


DEFAULT_ROOTS = ("datasets", "../shared/data/restoration", "../shared/data/benchmarks")
DERIVED = {"BSD68": ("CBSD68", matlab_rgb2gray)}  # gray sets made from colour ones (see SOURCES.md)


def find_set(name: str, root: str | os.PathLike | None = None) -> EvalSet:
    """The clean images of a test set: `<root>/<name>/HR/*` (super-resolution layout) or `<root>/<name>/*`,
    under `root`, else $SR_DATASETS, ./datasets, ../shared/data/restoration, ../shared/data/benchmarks.
    BSD68 (gray) is derived from CBSD68 when no folder holds it: MATLAB rgb2gray, files in string order."""
    from sr.evaluate import DatasetError

    roots = [Path(root)] if root else [Path(r) for r in (os.environ.get("SR_DATASETS"), *DEFAULT_ROOTS) if r]
    for base in roots:
        for folder in (base / name / "HR", base / name):
            if folder.is_dir():
                files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
                if not files:
                    raise DatasetError(f"{folder}: holds no images")
                return EvalSet(name, files)
    if name in DERIVED:
        source, convert = DERIVED[name]
        return EvalSet(name, find_set(source, root).files, convert)
    looked = ", ".join(str(b / name) for b in roots)
    raise DatasetError(f"{name}: test set not found (looked for {looked}; see datasets/README.md)")


def options_set(opt: DatasetOptions, where: str) -> tuple[EvalSet, Task]:
    """The clean images and the degradation of an options file's DegradedHRDataset test or validation entry
    (one fixed noise_sigma or jpeg_quality; noise_clip_prob 1 judges 8-bit noisy photos)."""
    from sr.evaluate import DatasetError

    if not isinstance(opt.dataroot_gt, str) or not Path(opt.dataroot_gt).is_dir():
        raise DatasetError(f"{where}: dataroot_gt: needs one folder of clean images (see datasets/README.md)")
    fixed = [k for k in ("noise_sigma", "jpeg_quality") if getattr(opt, k) is not None]
    if len(fixed) != 1 or isinstance(getattr(opt, fixed[0]), list):
        raise DatasetError(f"{where}: evaluation needs exactly one fixed noise_sigma or jpeg_quality")
    task = Denoise(opt.noise_sigma, opt.noise_clip_prob == 1) if opt.noise_sigma else JPEG(opt.jpeg_quality)
    folder = Path(opt.dataroot_gt)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DatasetError(f"{where}: {folder} holds no images")
    return EvalSet(opt.name, files), task
