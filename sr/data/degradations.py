"""Degradations: additive Gaussian noise and JPEG through the real codec (OpenCV's libjpeg) for restoration,
and the operators of Real-ESRGAN's real-world model (filtering, random resizes, Gaussian and Poisson noise in
colour or gray, unsharp masking), on H x W x C float32 images in [0, 1].

Each is a pure function of an image and explicit settings (a noise array, a quality, a numpy Generator), so
training datasets compose them from options with their own seeded generator, and evaluation reproduces the
official protocol's noise (`official_noise`: SwinIR's `main_test_swinir.py`, numpy's legacy generator seeded
with 0 for every image, drawn in OpenCV's BGR order, not clipped).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

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


RESIZE_MODES = ("area", "bilinear", "bicubic")
# torchvision's rgb_to_grayscale weights, which BasicSR's Poisson noise uses for its gray variant
GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)


def filter2d(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate every channel with the odd-sized `kernel`, borders mirrored without repeating the edge pixel
    (BasicSR's `filter2D`: reflect padding, then conv2d). Zero rings around the kernel (Real-ESRGAN pads
    every kernel to 21 x 21) are trimmed first: the same result, less work."""
    if kernel.shape[0] % 2 != 1 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"filter2d takes a square odd-sized kernel, got {kernel.shape}")
    while kernel.shape[0] > 1 and not (
        kernel[0].any() or kernel[-1].any() or kernel[:, 0].any() or kernel[:, -1].any()
    ):
        kernel = kernel[1:-1, 1:-1]
    out = cv2.filter2D(image, cv2.CV_32F, kernel.astype(np.float32), borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(image.shape)


def resize(
    image: np.ndarray,
    size: tuple[int, int] | None = None,
    scale: float | None = None,
    *,
    mode: str = "bicubic",
) -> np.ndarray:
    """PyTorch's `F.interpolate` (area, bilinear or bicubic, no antialiasing, corners not aligned) to
    `size` (h, w) or by `scale`, as Real-ESRGAN resizes its degradation batches."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r} (known: {', '.join(RESIZE_MODES)})")
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    align = None if mode == "area" else False
    out = F.interpolate(tensor, size=size, scale_factor=scale, mode=mode, align_corners=align)
    return out[0].numpy().transpose(1, 2, 0)


def gaussian_noise(
    image: np.ndarray, sigma: float, rng: np.random.Generator, *, gray: bool = False
) -> np.ndarray:
    """`image` plus white Gaussian noise of standard deviation `sigma` (0..255 scale), clipped to [0, 1];
    `gray`: one noise plane shared by all channels (luminance noise)."""
    h, w, c = image.shape
    noise = rng.standard_normal((h, w, 1) if gray else (h, w, c), dtype=np.float32) * np.float32(sigma / 255)
    return np.clip(image + noise, 0, 1)


def poisson_noise(
    image: np.ndarray, scale: float, rng: np.random.Generator, *, gray: bool = False
) -> np.ndarray:
    """`image` plus `scale` times shot noise, clipped to [0, 1] (BasicSR's `generate_poisson_noise_pt`).

    The image (or for `gray` its luminance, torchvision's weights) is quantised to 8 bits; with v = the
    number of distinct levels rounded up to a power of two, the noisy value is Poisson(v · x) / v, so the
    noise has mean 0 and variance x / v before scaling; gray noise is one plane shared by all channels.
    """
    x = image @ GRAY_WEIGHTS[: image.shape[2], None] if gray else image
    steps = np.clip(np.round(x * 255), 0, 255)
    distinct = np.count_nonzero(np.bincount(steps.astype(np.int64).ravel(), minlength=256))
    levels = 2.0 ** np.ceil(np.log2(distinct))
    x = steps / 255
    noise = (rng.poisson(x * levels) / levels - x).astype(np.float32)
    return np.clip(image + np.float32(scale) * noise, 0, 1)


def usm_kernel(radius: int = 50) -> np.ndarray:
    """The 2-D Gaussian of BasicSR's `USMSharp`: OpenCV's sigma-0 kernel of (odd) size radius(+1)."""
    size = radius + 1 if radius % 2 == 0 else radius
    column = cv2.getGaussianKernel(size, 0)
    return column @ column.T


def usm_sharpen(
    image: np.ndarray, weight: float = 0.5, threshold: float = 10, radius: int = 50
) -> np.ndarray:
    """Unsharp masking as BasicSR's `USMSharp` (Real-ESRGAN's sharpened ground truth): the image plus
    `weight` times its detail (image - Gaussian blur), clipped, blended in where the detail exceeds
    `threshold` / 255, through a blurred mask so there are no hard edges."""
    kernel = usm_kernel(radius)
    residual = image - filter2d(image, kernel)
    soft = filter2d((np.abs(residual) * 255 > threshold).astype(np.float32), kernel)
    sharp = np.clip(image + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * image
