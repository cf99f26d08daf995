"""Training-patch augmentation: aligned random crops of HR/LR pairs, flips and 90-degree rotations.

Every random choice comes from the `numpy.random.Generator` passed in, so a sample is a pure function of its
seed (what makes resumed runs repeat the uninterrupted one exactly).
"""

from __future__ import annotations

import numpy as np


def paired_random_crop(
    gt: np.ndarray, lq: np.ndarray, gt_size: int, scale: int, rng: np.random.Generator, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a gt_size patch of `gt` and the matching gt_size/scale patch of `lq` (H x W x C arrays)."""
    lq_size = gt_size // scale
    h, w = lq.shape[:2]
    if gt.shape[0] < h * scale or gt.shape[1] < w * scale:
        raise ValueError(f"{name}: HR {gt.shape[1]}x{gt.shape[0]} is smaller than x{scale} of LR {w}x{h}")
    if h < lq_size or w < lq_size:
        raise ValueError(f"{name}: LR {w}x{h} is smaller than the {lq_size}px patch (gt_size {gt_size})")
    top, left = int(rng.integers(0, h - lq_size + 1)), int(rng.integers(0, w - lq_size + 1))
    lq = lq[top : top + lq_size, left : left + lq_size]
    gt = gt[top * scale : (top + lq_size) * scale, left * scale : (left + lq_size) * scale]
    return gt, lq


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size patch at a random position."""
    h, w = img.shape[:2]
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return img[top : top + size, left : left + size]


def augment(
    images: list[np.ndarray], rng: np.random.Generator, *, hflip: bool, rotation: bool
) -> list[np.ndarray]:
    """The same horizontal flip, vertical flip and transpose (each with probability 1/2) on every image.

    As BasicSR's `augment`: vertical flip and transpose are on only with `rotation`, so the eight dihedral
    transforms are equally likely with both flags set.
    """
    do_h = hflip and rng.random() < 0.5
    do_v = rotation and rng.random() < 0.5
    do_t = rotation and rng.random() < 0.5
    out = []
    for img in images:
        if do_h:
            img = img[:, ::-1]
        if do_v:
            img = img[::-1]
        if do_t:
            img = img.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(img))
    return out
