"""Real-ESRGAN's second-order degradation (Wang et al. 2021, `RealESRGANModel.feed_data`), one HR image at a
time on the CPU: blur, random resize, Gaussian or Poisson noise, JPEG; the same again with the second-stage
settings; then, in random order, [resize to the LR size + final sinc filter] and JPEG; round to 8 bits.

Differences from the official batch code, all deliberate: every random choice is drawn per image from the
numpy Generator passed in (the official code draws the resize factor and interpolation mode once per batch,
then shuffles pairs through a pool to mix them), and JPEG goes through the real codec (OpenCV's libjpeg, an
integer quality) instead of DiffJPEG's differentiable approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sr.data import blur_kernels
from sr.data.degradations import RESIZE_MODES, filter2d, gaussian_noise, jpeg, poisson_noise, resize
from sr.imageio import to_uint8
from sr.options import DatasetOptions, SecondOrderOptions

# Real-ESRGAN's dataset settings (train_realesrgan_x4plus.yml) for kernel keys an options file leaves out.
KERNEL_DEFAULTS = {
    "kernel_list": list(blur_kernels.KERNEL_TYPES),
    "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
    "blur_sigma": [0.2, 3.0],
    "betag_range": [0.5, 4.0],
    "betap_range": [1.0, 2.0],
    "sinc_prob": 0.1,
    "blur_sigma2": [0.2, 1.5],
    "sinc_prob2": 0.1,
    "final_sinc_prob": 0.8,
}


@dataclass(frozen=True)
class Kernels:
    """The three 21 x 21 filters of one sample: first-stage blur, second-stage blur, final sinc (or pulse)."""

    first: np.ndarray
    second: np.ndarray
    final: np.ndarray


def kernel_settings(opt: DatasetOptions) -> dict:
    """The kernel keys of a RealESRGANDataset entry, Real-ESRGAN's values where the entry has none (the
    second stage's kernel types and shapes default to the first stage's)."""
    settings = {}
    for stage in ("", "2"):
        for key in ("kernel_list", "kernel_prob", "blur_sigma", "betag_range", "betap_range"):
            value = getattr(opt, key + stage)
            if value is None and stage:
                value = settings[key] if key != "blur_sigma" else KERNEL_DEFAULTS["blur_sigma2"]
            settings[key + stage] = KERNEL_DEFAULTS[key] if value is None else value
    for key in ("sinc_prob", "sinc_prob2", "final_sinc_prob"):
        settings[key] = KERNEL_DEFAULTS[key] if getattr(opt, key) is None else getattr(opt, key)
    return settings


def draw_kernels(rng: np.random.Generator, settings: dict) -> Kernels:
    """The filters `RealESRGANDataset.__getitem__` draws for one image."""
    stages = []
    for stage in ("", "2"):
        stages.append(
            blur_kernels.random_kernel(
                rng,
                settings["kernel_list" + stage],
                settings["kernel_prob" + stage],
                settings["blur_sigma" + stage],
                settings["betag_range" + stage],
                settings["betap_range" + stage],
                settings["sinc_prob" + stage],
            )
        )
    return Kernels(stages[0], stages[1], blur_kernels.final_sinc_kernel(rng, settings["final_sinc_prob"]))


def _resize_factor(rng: np.random.Generator, probs: list[float], span: list[float]) -> float:
    """Up (factor in [1, high]), down ([low, 1]) or keep (1), with the [up, down, keep] probabilities."""
    kind = rng.choice(3, p=np.asarray(probs) / np.sum(probs))
    return (
        float(rng.uniform(1, span[1])) if kind == 0 else float(rng.uniform(span[0], 1)) if kind == 1 else 1.0
    )


def _mode(rng: np.random.Generator) -> str:
    return RESIZE_MODES[int(rng.integers(len(RESIZE_MODES)))]


def _noise(
    image: np.ndarray,
    rng: np.random.Generator,
    gaussian_prob: float,
    sigmas: list[float],
    scales: list[float],
    gray_prob: float,
) -> np.ndarray:
    if rng.uniform() < gaussian_prob:
        sigma = float(rng.uniform(*sigmas))
        return gaussian_noise(image, sigma, rng, gray=bool(rng.uniform() < gray_prob))
    scale = float(rng.uniform(*scales))
    return poisson_noise(image, scale, rng, gray=bool(rng.uniform() < gray_prob))


def _jpeg(image: np.ndarray, rng: np.random.Generator, qualities: list[float]) -> np.ndarray:
    quality = int(np.clip(np.round(rng.uniform(*qualities)), 1, 100))
    return jpeg(to_uint8(image), quality).astype(np.float32) / 255


def degrade(
    hr: np.ndarray, rng: np.random.Generator, opt: SecondOrderOptions, kernels: Kernels, scale: int
) -> np.ndarray:
    """The LR image (H/scale x W/scale x 3 float32, 8-bit levels) Real-ESRGAN's pipeline makes of `hr`."""
    h, w = hr.shape[:2]
    out = filter2d(hr, kernels.first)
    out = resize(out, scale=_resize_factor(rng, opt.resize_prob, opt.resize_range), mode=_mode(rng))
    out = _noise(
        out, rng, opt.gaussian_noise_prob, opt.noise_range, opt.poisson_scale_range, opt.gray_noise_prob
    )
    out = _jpeg(out, rng, opt.jpeg_range)

    if rng.uniform() < opt.second_blur_prob:
        out = filter2d(out, kernels.second)
    factor = _resize_factor(rng, opt.resize_prob2, opt.resize_range2)
    size = (max(1, int(h / scale * factor)), max(1, int(w / scale * factor)))
    out = resize(out, size=size, mode=_mode(rng))
    out = _noise(
        out, rng, opt.gaussian_noise_prob2, opt.noise_range2, opt.poisson_scale_range2, opt.gray_noise_prob2
    )
    lr_size = (h // scale, w // scale)
    if rng.uniform() < 0.5:
        out = filter2d(resize(out, size=lr_size, mode=_mode(rng)), kernels.final)
        out = _jpeg(out, rng, opt.jpeg_range2)
    else:
        out = _jpeg(out, rng, opt.jpeg_range2)
        out = filter2d(resize(out, size=lr_size, mode=_mode(rng)), kernels.final)
    return to_uint8(out).astype(np.float32) / 255
