"""Blur kernels of Real-ESRGAN's degradation model (Wang et al. 2021; BasicSR `basicsr/data/degradations.py`):
isotropic and anisotropic Gaussian, generalized Gaussian, plateau and circular sinc (ringing) kernels.

Each kernel is a normalised K x K float64 array (K odd) centred on the middle pixel. `random_kernel` draws
one the way `RealESRGANDataset` does (size 7..21, a sinc with probability `sinc_prob`, else a type from
`kernel_list` with `kernel_prob`), from an explicit numpy Generator so a sample is a function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_SIZES = tuple(range(7, 22, 2))  # Real-ESRGAN draws 7, 9, ..., 21 and pads to 21
PADDED_SIZE = 21


def _grid(size: int) -> np.ndarray:
    """K x K x 2 pixel offsets (x, y) from the centre."""
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    axis = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(axis, axis)
    return np.stack([xx, yy], axis=-1)


def covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """2 x 2 covariance with standard deviations (sigma_x, sigma_y) along axes rotated by `theta` radians."""
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """x^T Σ^-1 x at every pixel offset."""
    grid = _grid(size)
    return np.einsum("hwi,ij,hwj->hw", grid, np.linalg.inv(covariance(sigma_x, sigma_y, theta)), grid)


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return kernel / kernel.sum()


def gaussian(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Bivariate Gaussian; isotropic when `sigma_y` is None."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    return _normalised(np.exp(-0.5 * _quadratic(size, sigma_x, sigma_y, theta)))


def generalized_gaussian(
    size: int, sigma_x: float, beta: float, sigma_y: float | None = None, theta: float = 0.0
) -> np.ndarray:
    """exp(-0.5 (x^T Σ^-1 x)^beta): beta 1 is the Gaussian, smaller is peakier, larger is flatter."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    return _normalised(np.exp(-0.5 * _quadratic(size, sigma_x, sigma_y, theta) ** beta))


def plateau(
    size: int, sigma_x: float, beta: float, sigma_y: float | None = None, theta: float = 0.0
) -> np.ndarray:
    """1 / (1 + (x^T Σ^-1 x)^beta): a flat top with heavy tails."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    return _normalised(1.0 / (1.0 + _quadratic(size, sigma_x, sigma_y, theta) ** beta))


def sinc(size: int, cutoff: float) -> np.ndarray:
    """Circularly symmetric ideal low-pass (cutoff in radians per pixel, π the Nyquist limit), truncated to
    K x K: ω J1(ω r) / (2π r), with its limit ω² / (4π) at r = 0."""
    grid = _grid(size)
    radius = np.hypot(grid[..., 0], grid[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * special.j1(cutoff * radius) / (2 * np.pi * radius)
    kernel[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
    return _normalised(kernel)


def pad(kernel: np.ndarray, size: int = PADDED_SIZE) -> np.ndarray:
    """`kernel` centred in a size x size array of zeros."""
    margin = (size - kernel.shape[0]) // 2
    return np.pad(kernel, margin) if margin > 0 else kernel


def pulse(size: int = PADDED_SIZE) -> np.ndarray:
    """The identity kernel (a 1 in the middle)."""
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _beta(rng: np.random.Generator, low: float, high: float) -> float:
    """Below or above 1 with equal chance, uniform within that side (BasicSR's draw for both shapes)."""
    return float(rng.uniform(low, 1) if rng.uniform() < 0.5 else rng.uniform(1, high))


def mixed_kernel(
    rng: np.random.Generator,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    size: int,
    blur_sigma: Sequence[float],
    betag_range: Sequence[float],
    betap_range: Sequence[float],
) -> np.ndarray:
    """One kernel of a type drawn from `kernel_list` with `kernel_prob`: σx (and for anisotropic ones σy and
    a rotation in [-π, π]) uniform in `blur_sigma`, shapes β from `betag_range` / `betap_range`."""
    kind = kernel_list[rng.choice(len(kernel_list), p=np.asarray(kernel_prob) / np.sum(kernel_prob))]
    sigma_x = float(rng.uniform(*blur_sigma))
    sigma_y, theta = sigma_x, 0.0
    if kind.endswith("aniso"):
        sigma_y, theta = float(rng.uniform(*blur_sigma)), float(rng.uniform(-math.pi, math.pi))
    if kind in ("iso", "aniso"):
        return gaussian(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian(size, sigma_x, _beta(rng, *betag_range), sigma_y, theta)
    if kind.startswith("plateau"):
        return plateau(size, sigma_x, _beta(rng, *betap_range), sigma_y, theta)
    raise ValueError(f"unknown kernel type {kind!r} (known: {', '.join(KERNEL_TYPES)})")


def random_kernel(
    rng: np.random.Generator,
    kernel_list: Sequence[str],
    kernel_prob: Sequence[float],
    blur_sigma: Sequence[float],
    betag_range: Sequence[float],
    betap_range: Sequence[float],
    sinc_prob: float,
) -> np.ndarray:
    """A 21 x 21 blur kernel as `RealESRGANDataset` draws one for a degradation stage: size 7..21; with
    probability `sinc_prob` a sinc (cutoff in [π/3, π] below size 13, [π/5, π] from 13), else a mixed
    kernel."""
    size = int(rng.choice(KERNEL_SIZES))
    if rng.uniform() < sinc_prob:
        kernel = sinc(size, float(rng.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi)))
    else:
        kernel = mixed_kernel(rng, kernel_list, kernel_prob, size, blur_sigma, betag_range, betap_range)
    return pad(kernel)


def final_sinc_kernel(rng: np.random.Generator, final_sinc_prob: float) -> np.ndarray:
    """The last stage's filter: with probability `final_sinc_prob` a sinc of size 7..21 with cutoff in
    [π/3, π], padded to 21, else the pulse (no filtering)."""
    if rng.uniform() < final_sinc_prob:
        size = int(rng.choice(KERNEL_SIZES))
        return pad(sinc(size, float(rng.uniform(math.pi / 3, math.pi))))
    return pulse()
