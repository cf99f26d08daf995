"""Tests of sr.metrics: hand formulas, scikit-image SSIM and the bicubic x4 Set5 anchor (REFERENCE.md §7)."""

import math

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from sr.metrics import psnr, rgb_to_y, ssim

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _rand_img(seed: int, shape=(40, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_rgb_to_y_bt601_in_rgb_order():
    colours = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]])
    expected = [
        16.0,
        235.0,
        16 + 65.481,
        16 + 128.553,
        16 + 24.966,
        16 + (65.481 * 10 + 128.553 * 20 + 24.966 * 30) / 255,
    ]
    y = rgb_to_y(colours.astype(np.uint8))
    assert y.dtype == np.float64 and y.shape == (1, 6)
    np.testing.assert_allclose(y[0], expected, rtol=0, atol=1e-12)


def test_rgb_to_y_gray_is_replicated():
    gray = np.array([[0, 51, 255]], dtype=np.uint8)
    expected = 16 + 219 * gray[0].astype(np.float64) / 255
    np.testing.assert_allclose(rgb_to_y(gray[:, :, None])[0], expected, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(gray)[0], expected, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(np.zeros((2, 2, 4)))


def test_psnr_hand_formula():
    a = _rand_img(0).astype(np.float64)
    a = np.clip(a, 10, 245)
    b = a + 5
    assert psnr(a, b, y_channel=False) == pytest.approx(20 * math.log10(255 / 5), abs=1e-12)
    # Adding 5 to R, G and B moves Y by 5 * 219 / 255.
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / (5 * 219 / 255)), abs=1e-12)
    noise = np.random.default_rng(1).normal(0, 3, a.shape)
    mse = np.mean(noise**2)
    assert psnr(a, a + noise, y_channel=False) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-12)
    assert psnr(a, a) == math.inf


def test_crop_border_removes_each_side():
    a = _rand_img(2)
    b = a.copy()
    b[:3] = 0
    b[:, -3:] = 255
    assert psnr(a, b, crop_border=3) == math.inf
    assert ssim(a, b, crop_border=3) == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, b, crop_border=2) < 30
    with pytest.raises(ValueError, match="crop_border"):
        psnr(a, b, crop_border=20)


def test_uint8_and_float_inputs_agree():
    a, b = _rand_img(3), _rand_img(4)
    assert psnr(a, b) == psnr(a.astype(np.float32), b.astype(np.float64))
    assert ssim(a, b) == pytest.approx(ssim(a.astype(np.float64), b.astype(np.float64)), abs=1e-15)


def test_gray_input_scores_like_replicated_rgb():
    a, b = _rand_img(5, (30, 30, 1)), _rand_img(6, (30, 30, 1))
    a3, b3 = np.repeat(a, 3, axis=2), np.repeat(b, 3, axis=2)
    assert psnr(a, b, crop_border=2) == pytest.approx(psnr(a3, b3, crop_border=2), abs=1e-12)
    assert ssim(a, b, crop_border=2) == pytest.approx(ssim(a3, b3, crop_border=2), abs=1e-12)


def _skimage_ssim(a: np.ndarray, b: np.ndarray, channel_axis=None) -> float:
    """scikit-image's Gaussian SSIM: its mean skips the 5-pixel border that BasicSR's valid filter drops."""
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )


def test_ssim_equals_skimage():
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (45, 37, 3)).astype(np.float64)
    b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
    assert ssim(a, b, y_channel=False) == pytest.approx(_skimage_ssim(a, b, channel_axis=2), abs=1e-12)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert ssim(a, b) == pytest.approx(_skimage_ssim(ya, yb), abs=1e-12)
    assert ssim(a, b, crop_border=4) == pytest.approx(
        _skimage_ssim(ya[4:-4, 4:-4], yb[4:-4, 4:-4]), abs=1e-12
    )


def test_ssim_properties_and_limits():
    a, b = _rand_img(8), _rand_img(9)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-15)
    per_channel = [ssim(a[:, :, c : c + 1], b[:, :, c : c + 1], y_channel=False) for c in range(3)]
    assert ssim(a, b, y_channel=False) == pytest.approx(np.mean(per_channel), abs=1e-15)
    with pytest.raises(ValueError, match="11 x 11"):
        ssim(a[:12, :12], b[:12, :12], crop_border=1)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, b[:, :-1])


def test_bicubic_x4_set5_anchor(shared_dir):
    """REFERENCE.md §7: PIL bicubic x4 of the Set5 LR scores 28.4290 dB / 0.8111 (Y, crop 4, image mean)."""
    root = shared_dir / "data" / "benchmarks" / "Set5"
    psnrs, ssims = [], []
    for name in SET5:
        lr = Image.open(root / f"LR_bicubic/X4/{name}.png")
        hr = np.asarray(Image.open(root / f"HR/{name}.png"))[: 4 * lr.height, : 4 * lr.width]
        sr = np.asarray(lr.resize((4 * lr.width, 4 * lr.height), Image.BICUBIC))
        psnrs.append(psnr(sr, hr, crop_border=4))
        ssims.append(ssim(sr, hr, crop_border=4))
    assert np.mean(psnrs) == pytest.approx(28.4290, abs=5e-4), psnrs
    assert np.mean(ssims) == pytest.approx(0.8111, abs=5e-4), ssims
