"""PSNR and SSIM of 0-255 images, numerically equal to BasicSR ``basicsr/metrics/psnr_ssim.py`` (numpy only),
and PSNR-B (PSNR with a blocking-effect penalty, for JPEG artifact removal) as SwinIR's
``utils/util_calculate_psnr_ssim.py::calculate_psnrb``.

Y as MATLAB ``rgb2ycbcr`` / BasicSR ``color_util.rgb2ycbcr(y_only=True)``; SSIM as Wang et al.'s ``ssim.m``.
"""

import math

import numpy as np

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0  # BT.601 on R, G, B in 0..255
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of BT.601 YCbCr, float64 in 16..235: 16 + (65.481 R + 128.553 G + 24.966 B) / 255, RGB in 0..255.

    ``img`` is H x W x 3 RGB, or H x W x 1 / H x W grayscale, which is replicated to RGB first
    (Y = 16 + 219 v / 255, as OpenCV colour reading and BasicSR's loader do). Returns H x W, unrounded.
    """
    img = np.asarray(img, dtype=np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(f"rgb_to_y expects H x W x 3 RGB or grayscale, got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return 16.0 + img @ _Y_WEIGHTS


def _prepare(
    img1: np.ndarray, img2: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop ``crop_border`` pixels from every side, optionally take Y; float64 H x W x C results."""
    a = np.asarray(img1)
    b = np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected H x W x C images, got shape {a.shape}")
    if crop_border < 0 or 2 * crop_border >= min(a.shape[:2]):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {a.shape[0]} x {a.shape[1]} image")
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return rgb_to_y(a)[:, :, None], rgb_to_y(b)[:, :, None]
    return a.astype(np.float64), b.astype(np.float64)


def psnr(img1: np.ndarray, img2: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """PSNR in dB of two 0..255 H x W x C RGB images (uint8 or float): 10 log10(255² / MSE), inf if equal.

    As BasicSR ``calculate_psnr``: crop ``crop_border`` pixels on every side, then (``y_channel``) compare
    the BT.601 Y; MSE over all pixels and channels in float64.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def _gaussian_window() -> np.ndarray:
    """The 11-tap, sigma 1.5 Gaussian normalised to sum 1 (as ``cv2.getGaussianKernel(11, 1.5)``)."""
    x = np.arange(11, dtype=np.float64) - 5
    g = np.exp(-(x * x) / (2 * 1.5 * 1.5))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 11 x 11 Gaussian filter of a 2-D array, valid part only (BasicSR: filter2D[5:-5, 5:-5])."""
    n = len(g)
    rows = sum(g[k] * x[k : x.shape[0] - n + 1 + k] for k in range(n))
    return sum(g[k] * rows[:, k : x.shape[1] - n + 1 + k] for k in range(n))


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of the SSIM map of one channel, as BasicSR ``_ssim``."""
    g = _gaussian_window()
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _filter_valid(a * a, g) - mu1_sq
    sigma2_sq = _filter_valid(b * b, g) - mu2_sq
    sigma12 = _filter_valid(a * b, g) - mu1_mu2
    num = (2 * mu1_mu2 + _C1) * (2 * sigma12 + _C2)
    den = (mu1_sq + mu2_sq + _C1) * (sigma1_sq + sigma2_sq + _C2)
    return float(np.mean(num / den))


def ssim(img1: np.ndarray, img2: np.ndarray, *, crop_border: int = 0, y_channel: bool = True) -> float:
    """SSIM of two 0..255 images (uint8 or float), H x W x C RGB, as BasicSR ``calculate_ssim``.

    Crop ``crop_border`` pixels on every side, optionally take Y, then per channel: 11 x 11 Gaussian window
    (sigma 1.5), valid filtering only, C1 = (0.01·255)², C2 = (0.03·255)², mean of the SSIM map; channels
    averaged. Images must be at least 11 x 11 after cropping.
    """
    a, b = _prepare(img1, img2, crop_border, y_channel)
    if min(a.shape[:2]) < 11:
        raise ValueError(
            f"SSIM needs at least 11 x 11 pixels after cropping, got {a.shape[0]} x {a.shape[1]}"
        )
    return float(np.mean([_ssim_channel(a[:, :, c], b[:, :, c]) for c in range(a.shape[2])]))


BLOCK = 8  # JPEG's block size


def blocking_effect_factor(x: np.ndarray) -> float:
    """The blocking-effect factor of one H x W channel in [0, 1] (Yim and Bovik, 2011), as SwinIR computes it.

    Mean squared difference across the pixel pairs that straddle 8-pixel block edges minus that across
    all other neighbouring pairs, times log2(8) / log2(min(H, W)), and 0 when not positive. The counts
    dividing the two sums are the official code's, H·(W // 8 − 1) boundary pairs per direction, which is
    one short of the pairs summed when a side is not a multiple of 8: kept, so scores equal the papers'.
    """
    h, w = x.shape
    cols, rows = np.arange(BLOCK - 1, w - 1, BLOCK), np.arange(BLOCK - 1, h - 1, BLOCK)
    other_cols, other_rows = np.setdiff1d(np.arange(w - 1), cols), np.setdiff1d(np.arange(h - 1), rows)
    boundary_sum = ((x[:, cols] - x[:, cols + 1]) ** 2).sum() + ((x[rows] - x[rows + 1]) ** 2).sum()
    other_sum = ((x[:, other_cols] - x[:, other_cols + 1]) ** 2).sum() + (
        (x[other_rows] - x[other_rows + 1]) ** 2
    ).sum()
    n_boundary = h * (w // BLOCK - 1) + w * (h // BLOCK - 1)
    n_other = h * (w - 1) + w * (h - 1) - n_boundary
    boundary, other = boundary_sum / n_boundary, other_sum / n_other
    if boundary <= other:
        return 0.0
    return float(math.log2(BLOCK) / math.log2(min(h, w)) * (boundary - other))


def psnrb(
    restored: np.ndarray, reference: np.ndarray, *, crop_border: int = 0, y_channel: bool = False
) -> float:
    """PSNR-B in dB of a restored 0..255 image against its reference: per channel
    10·log10(1 / (MSE + BEF(restored))) on [0, 1] values, averaged over channels.

    The blocking-effect factor is taken of the first argument only (the image being judged), as in SwinIR's
    ``calculate_psnrb`` (after quantization-guided-ac's ``psnrb.py``); crop and ``y_channel`` as ``psnr``.
    """
    a, b = _prepare(restored, reference, crop_border, y_channel)
    a, b = a / 255.0, b / 255.0
    total = 0.0
    for c in range(a.shape[2]):
        mse = float(np.mean((a[:, :, c] - b[:, :, c]) ** 2))
        penalty = mse + blocking_effect_factor(a[:, :, c])
        total += math.inf if penalty == 0 else 10.0 * math.log10(1.0 / penalty)
    return total / a.shape[2]
