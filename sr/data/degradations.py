"""Degradations for restoration: additive Gaussian noise and JPEG through the real codec (OpenCV's libjpeg).

Each is a pure function of an image and explicit settings (a noise array or a quality), so training
datasets compose them from options with their own seeded generator, and evaluation reproduces the official
protocol's noise (`official_noise`: SwinIR's `main_test_swinir.py`, numpy's legacy generator seeded with 0
for every image, drawn in OpenCV's BGR order, not clipped).
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SIGMA = 255.0  # noise levels are on the 0..255 scale, as papers state them


def check_sigma(sigma: float) -> float:
    """`sigma` if it is a usable noise level (0 < σ ≤ 255, on the 0..255 scale), else a ValueError."""
    if not 0 < sigma <= MAX_SIGMA:
        raise ValueError(f"noise sigma {sigma:g} is out of range (0 < sigma <= 255, on the 0..255 scale)")
    return float(sigma)


def check_quality(quality: int) -> int:
    """`quality` if it is a JPEG quality OpenCV encodes (1..100), else a ValueError."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality!r} is out of range (an integer from 1 to 100)")
    return int(quality)


def add_noise(clean: np.ndarray, noise: np.ndarray, *, quantize: bool = False) -> np.ndarray:
    """`clean` (H x W x C floats in [0, 1]) plus `noise`, as float32.

    `quantize`: clip to [0, 1] and round to 8 bits, as a noisy photo is stored; otherwise the sum is kept
    as is (values outside [0, 1] included), as the papers' protocol does.
    """
    noisy = clean.astype(np.float64) + noise
    if quantize:
        noisy = np.round(np.clip(noisy, 0, 1) * 255) / 255
    return noisy.astype(np.float32)


def official_noise(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """The noise SwinIR's test script adds to an H x W (x 3, RGB) image at level `sigma` (0..255 scale).

    `np.random.seed(0)` before every image, then `np.random.normal(0, sigma / 255, shape)` on the image as
    OpenCV reads it: for colour the draws fill B, G, R order, so they are returned with channels reversed.
    """
    check_sigma(sigma)
    noise = np.random.RandomState(0).normal(0, sigma / 255.0, shape)
    return noise[..., ::-1] if len(shape) == 3 and shape[2] == 3 else noise


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """`image` (H x W x C uint8, C = 1 gray or 3 RGB) compressed at `quality` and decoded, through OpenCV.

    Exactly `cv2.imencode('.jpg', img, [IMWRITE_JPEG_QUALITY, q])` then `cv2.imdecode` on OpenCV's BGR (or
    gray) layout, as SwinIR's and FBCNN's test scripts: libjpeg's defaults, 4:2:0 chroma for colour.
    """
    check_quality(quality)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"jpeg() takes H x W x 1 or H x W x 3 uint8, got {image.dtype} {image.shape}")
    colour = image.shape[2] == 3
    planar = np.ascontiguousarray(image[..., ::-1] if colour else image[..., 0])
    ok, encoded = cv2.imencode(".jpg", planar, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    return np.ascontiguousarray(decoded[..., ::-1]) if colour else decoded[..., None]


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB → H x W x 1 uint8 gray exactly as `cv2.imread(path, IMREAD_GRAYSCALE)` reads a
    colour PNG (libpng's own weighting and rounding, which differ from `cv2.cvtColor` on some pixels): the
    official script's gray test images. Done by decoding an uncompressed in-memory PNG."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    if not ok:
        raise ValueError(f"OpenCV could not PNG-encode an image of shape {rgb.shape}")
    return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)[..., None]


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB → H x W x 1 uint8 BT.601 luma in 16..235 (16 + (65.481 R + 128.553 G + 24.966 B)
    / 255, rounded): what SwinIR's JPEG test feeds the gray model for a colour file."""
    bgr = rgb[..., ::-1].astype(np.float32) / np.float32(255)  # the official bgr2ycbcr's order and dtypes
    return np.round(np.dot(bgr, [24.966, 128.553, 65.481]) + 16.0).astype(np.uint8)[..., None]
