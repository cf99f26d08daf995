"""Real-ESRGAN's degradation operators against independent truth: scipy's Gaussian density and correlation,
closed-form kernel ratios and moments, the sinc filter's frequency response, box and linear resampling,
noise statistics (Gaussian σ, Poisson variance x / levels), the JPEG codec's own output, unsharp masking
with a closed-form Gaussian; and the whole pipeline's determinism under a seed, worker processes included."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.stats import multivariate_normal
from torch.utils.data import DataLoader

from sr.data import blur_kernels, second_order
from sr.data.datasets import build_dataset
from sr.data.degradations import filter2d, gaussian_noise, poisson_noise, resize, usm_sharpen
from sr.data.sampler import TrainBatchSampler
from sr.options import DatasetOptions, OptionsError, SecondOrderOptions


def _moments(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean offset (x, y) and covariance of a kernel read as a distribution over pixel offsets."""
    n = kernel.shape[0]
    axis = np.arange(n) - n // 2
    xx, yy = np.meshgrid(axis, axis)
    pts = np.stack([xx.ravel(), yy.ravel()])
    mean = pts @ kernel.ravel()
    centred = pts - mean[:, None]
    return mean, (centred * kernel.ravel()) @ centred.T


@pytest.mark.parametrize("sx, sy, theta", [(1.2, 1.2, 0.0), (2.0, 0.8, 0.6), (0.7, 2.2, -2.5)])
def test_gaussian_kernel_is_the_normal_density_with_that_covariance(sx, sy, theta):
    kernel = blur_kernels.gaussian(21, sx, sy, theta)
    cov = blur_kernels.covariance(sx, sy, theta)
    axis = np.arange(21) - 10
    xx, yy = np.meshgrid(axis, axis)
    density = multivariate_normal([0, 0], cov).pdf(np.stack([xx, yy], -1))
    np.testing.assert_allclose(kernel, density / density.sum(), rtol=1e-10, atol=1e-15)
    mean, moments = _moments(kernel)
    assert abs(kernel.sum() - 1) < 1e-12 and np.abs(mean).max() < 1e-12
    # σ ≤ 2.2 in a 21 x 21 support: sampling the density on the integer grid keeps the covariance
    np.testing.assert_allclose(moments, cov, atol=2e-3)
    # the first axis is x: rotating by π/2 swaps the standard deviations
    np.testing.assert_allclose(
        blur_kernels.covariance(sx, sy, math.pi / 2), np.diag([sy**2, sx**2]), atol=1e-12
    )


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.7])
def test_generalized_and_plateau_kernels_follow_their_closed_forms(beta):
    # isotropic σ = 2: offset (2, 0) has x^T Σ^-1 x = 1 and offset (0, 4) has 4, whatever β is
    g = blur_kernels.generalized_gaussian(21, 2.0, beta)
    p = blur_kernels.plateau(21, 2.0, beta)
    c = 10
    assert g[c, c + 2] / g[c, c] == pytest.approx(math.exp(-0.5))
    assert g[c + 4, c] / g[c, c] == pytest.approx(math.exp(-0.5 * 4**beta))
    assert p[c, c] / p[c, c + 2] == pytest.approx(2.0)
    assert p[c, c] / p[c + 4, c] == pytest.approx(1 + 4**beta)
    for kernel in (g, p, blur_kernels.plateau(15, 2.0, beta, 0.8, 0.4)):
        assert kernel.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)  # point-symmetric
    np.testing.assert_allclose(
        blur_kernels.generalized_gaussian(13, 1.5, 1.0, 0.9, 1.1),
        blur_kernels.gaussian(13, 1.5, 0.9, 1.1),
        atol=1e-15,
    )


def _response(kernel: np.ndarray, wx: float, wy: float) -> float:
    n = kernel.shape[0]
    axis = np.arange(n) - n // 2
    xx, yy = np.meshgrid(axis, axis)
    return abs(np.sum(kernel * np.exp(-1j * (wx * xx + wy * yy))))


@pytest.mark.parametrize("cutoff", [math.pi / 3, math.pi / 2, 0.8 * math.pi])
def test_sinc_kernel_passes_below_its_cutoff_and_stops_above(cutoff):
    kernel = blur_kernels.sinc(21, cutoff)
    assert kernel.sum() == pytest.approx(1.0)
    # truncated to 21 x 21: Gibbs ripples of up to ~13 % in the pass band (the ideal filter is 1 or 0)
    for angle in (0.0, math.pi / 4, 1.1):  # circularly symmetric: the same along every direction
        for w in np.linspace(0, 0.7 * cutoff, 5):
            assert _response(kernel, w * math.cos(angle), w * math.sin(angle)) == pytest.approx(1, abs=0.15)
        for w in np.linspace(1.3 * cutoff, min(math.pi, 2 * cutoff), 4):
            assert _response(kernel, w * math.cos(angle), w * math.sin(angle)) < 0.12


def test_random_kernels_draw_sizes_and_types_as_configured():
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(400):
        k = blur_kernels.random_kernel(rng, ["iso"], [1.0], [0.2, 3.0], [0.5, 4], [1, 2], sinc_prob=0.0)
        assert k.shape == (21, 21) and k.sum() == pytest.approx(1.0)
        np.testing.assert_allclose(k, k.T, atol=1e-15)  # isotropic
        rows = np.flatnonzero(k.any(axis=1))
        sizes.append(rows[-1] - rows[0] + 1)
    counts = np.bincount(sizes, minlength=22)[7::2]
    assert set(sizes) == set(blur_kernels.KERNEL_SIZES) and counts.min() > 25  # 8 sizes, ~50 each
    aniso = blur_kernels.random_kernel(rng, ["aniso"], [1.0], [0.5, 3.0], [0.5, 4], [1, 2], sinc_prob=0.0)
    assert np.abs(aniso - aniso.T).max() > 1e-6
    pulse = blur_kernels.final_sinc_kernel(rng, final_sinc_prob=0.0)
    assert pulse[10, 10] == 1 and pulse.sum() == 1
    with pytest.raises(ValueError, match="unknown kernel type"):
        blur_kernels.mixed_kernel(rng, ["box"], [1.0], 7, [1, 2], [0.5, 4], [1, 2])


def test_filter2d_is_correlation_with_mirrored_borders():
    rng = np.random.default_rng(1)
    image = rng.random((23, 17, 3), dtype=np.float32)
    kernel = rng.random((5, 5))  # not symmetric: correlation and convolution differ
    expected = np.stack(
        [ndimage.correlate(image[..., c].astype(np.float64), kernel, mode="mirror") for c in range(3)], -1
    )
    np.testing.assert_allclose(filter2d(image, kernel), expected, atol=2e-5)
    with pytest.raises(ValueError, match="odd"):
        filter2d(image, np.ones((4, 4)))


def test_resize_area_is_block_means_and_bilinear_keeps_a_ramp():
    rng = np.random.default_rng(2)
    image = rng.random((8, 12, 3), dtype=np.float32)
    blocks = image.reshape(4, 2, 6, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize(image, scale=0.5, mode="area"), blocks, atol=1e-6)
    ramp = np.tile(np.arange(16, dtype=np.float32)[None, :, None], (4, 1, 3)) / 16
    up = resize(ramp, size=(8, 32), mode="bilinear")
    x = np.arange(32)
    expected = ((x + 0.5) / 2 - 0.5) / 16  # half-pixel centres, as align_corners=False
    np.testing.assert_allclose(up[3, 2:-2, 0], expected[2:-2], atol=1e-6)
    assert resize(image, size=(5, 7), mode="bicubic").shape == (5, 7, 3)


def test_gaussian_noise_has_the_requested_sigma_and_gray_noise_is_shared():
    rng = np.random.default_rng(3)
    image = np.full((256, 256, 3), 0.5, np.float32)
    noisy = gaussian_noise(image, 20.0, rng)
    assert (noisy - 0.5).std() == pytest.approx(20 / 255, rel=0.02)
    assert abs((noisy - 0.5).mean()) < 1e-3
    gray = gaussian_noise(image, 20.0, rng, gray=True)
    assert np.array_equal(gray[..., 0], gray[..., 2]) and (gray - 0.5).std() == pytest.approx(
        20 / 255, rel=0.02
    )
    assert gaussian_noise(np.zeros((8, 8, 3), np.float32), 30.0, rng).min() >= 0  # clipped


def test_poisson_noise_variance_is_level_over_levels():
    rng = np.random.default_rng(4)
    image = np.empty((512, 512, 3), np.float32)
    image[:256] = (np.arange(200, dtype=np.float32) / 255)[np.arange(256 * 512 * 3) % 200].reshape(
        256, 512, 3
    )
    image[256:] = np.array([0.8, 0.4, 0.2], np.float32)  # a flat region; 200 distinct levels → 256 levels
    region = slice(256, None)
    for scale in (1.0, 2.5):
        noise = poisson_noise(image, scale, rng)[region] - image[region]
        for c, level in enumerate((0.8, 0.4, 0.2)):
            level8 = round(level * 255) / 255
            var = scale**2 * level8 / 256
            if not 0 < level8 - 5 * math.sqrt(var) < level8 + 5 * math.sqrt(var) < 1:
                continue  # the clip to [0, 1] would cut the distribution
            assert noise[..., c].var() == pytest.approx(var, rel=0.05)
            assert abs(noise[..., c].mean()) < 5 * math.sqrt(var / noise[..., c].size)
    gray = poisson_noise(image, 1.0, rng, gray=True)[region] - image[region]
    luma = round(float(np.dot([0.8, 0.4, 0.2], [0.2989, 0.587, 0.114])) * 255) / 255
    inside = (gray[..., 0] + 0.8 < 1) & (gray[..., 2] + 0.2 > 0)  # not clipped in any channel
    assert inside.mean() > 0.99 and np.allclose(gray[..., 0][inside], gray[..., 1][inside], atol=1e-6)
    assert gray[..., 0].var() == pytest.approx(luma / 256, rel=0.05)


def test_pipeline_jpeg_is_the_codec_output():
    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.random((48, 40, 3), dtype=np.float32), (5, 5), 0)
    draw = np.random.default_rng(6)
    out = second_order._jpeg(image, draw, [30, 95])
    quality = int(np.round(np.random.default_rng(6).uniform(30, 95)))
    bgr = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)[..., ::-1]
    _, encoded = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, quality])
    expected = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255
    np.testing.assert_array_equal(out, expected)


def test_usm_sharpen_matches_a_closed_form_gaussian():
    rng = np.random.default_rng(7)
    image = cv2.resize(rng.random((12, 10, 3), dtype=np.float32), (60, 72), interpolation=cv2.INTER_NEAREST)
    # OpenCV's sigma-0 kernel of size 51 is the Gaussian with σ = 0.3 (51 / 2 - 1.5) + 0.8 = 8
    axis = np.arange(51) - 25
    g = np.exp(-(axis**2) / (2 * 8.0**2))
    g2 = np.outer(g, g) / g.sum() ** 2

    def blur(x):
        return np.stack(
            [ndimage.correlate(x[..., c].astype(np.float64), g2, mode="mirror") for c in range(3)], -1
        )

    residual = image - blur(image)
    soft = blur((np.abs(residual) * 255 > 10).astype(np.float64))
    expected = soft * np.clip(image + 0.5 * residual, 0, 1) + (1 - soft) * image
    np.testing.assert_allclose(usm_sharpen(image), expected, atol=1e-5)
    flat = np.full((40, 40, 3), 0.3, np.float32)
    np.testing.assert_allclose(usm_sharpen(flat), flat, atol=1e-6)


@pytest.fixture
def hr_folder(tmp_path):
    rng = np.random.default_rng(8)
    for i, (h, w) in enumerate([(90, 70), (40, 52), (64, 64)]):  # the middle one is padded up
        base = cv2.resize(rng.random((h // 4, w // 4, 3), dtype=np.float32), (w, h))
        Image.fromarray(np.round(base * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def _dataset(folder, **overrides):
    opt = DatasetOptions(
        name="rw",
        type="RealESRGANDataset",
        dataroot_gt=str(folder),
        gt_size=32,
        crop_pad_size=64,
        use_hflip=True,
        use_rot=True,
    )
    degradation = SecondOrderOptions(gt_size=32, **overrides)
    return build_dataset(opt, 4, "test", degradation=degradation, usm_input=True, usm_target=True)


def test_second_order_pipeline_is_a_function_of_the_seed(hr_folder):
    dataset = _dataset(hr_folder)
    first, again, other = dataset[(1, 42)], dataset[(1, 42)], dataset[(1, 43)]
    assert first["lq"].shape == (3, 8, 8) and first["gt"].shape == first["gt_usm"].shape == (3, 32, 32)
    for key in ("lq", "gt", "gt_usm"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["lq"], other["lq"])
    levels = first["lq"] * 255
    assert torch.equal(levels, levels.round()) and 0 <= first["lq"].min() and first["lq"].max() <= 1


def test_second_order_batches_do_not_depend_on_worker_processes(hr_folder):
    dataset = _dataset(hr_folder)

    def batches(workers):
        sampler = TrainBatchSampler(len(dataset), 2, seed=3, shuffle=True, enlarge_ratio=2)
        sampler.start(0, 0)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers)
        return [torch.cat([b["lq"].flatten(), b["gt_usm"].flatten()]) for b in loader]

    serial, parallel = batches(0), batches(2)
    assert len(serial) == 3 and all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))


def test_second_order_keeps_mild_settings_close_to_bicubic(tmp_path):
    """With every random stage switched to its mildest setting the LR is the HR blurred by a tiny kernel and
    resized: close to a plain area downscale of a smooth image (a sanity bound, not a tautology)."""
    y, x = np.mgrid[0:64, 0:64] / 64
    smooth = np.stack([np.sin(2 * x + 1), np.cos(3 * y), np.sin(x + 2 * y)], -1) * 0.4 + 0.5
    Image.fromarray(np.round(smooth * 255).astype(np.uint8)).save(tmp_path / "smooth.png")
    mild = dict(
        resize_prob=[0, 0, 1],
        resize_prob2=[0, 0, 1],
        noise_range=[0, 0],
        noise_range2=[0, 0],
        gaussian_noise_prob=1,
        gaussian_noise_prob2=1,
        jpeg_range=[100, 100],
        jpeg_range2=[100, 100],
        second_blur_prob=0,
    )
    opt = DatasetOptions(
        name="rw",
        type="RealESRGANDataset",
        dataroot_gt=str(tmp_path),
        gt_size=32,
        crop_pad_size=64,
        kernel_list=["iso"],
        kernel_prob=[1.0],
        blur_sigma=[0.2, 0.21],
        sinc_prob=0.0,
        final_sinc_prob=0.0,
    )
    dataset = build_dataset(
        opt, 4, "t", degradation=SecondOrderOptions(gt_size=32, **mild), usm_input=False, usm_target=False
    )
    sample = dataset[(0, 1)]
    gt = sample["gt"].numpy().transpose(1, 2, 0)
    area = resize(gt, scale=0.25, mode="area")
    assert np.abs(sample["lq"].numpy().transpose(1, 2, 0) - area).mean() < 0.01
    assert "gt_usm" not in sample


def test_bicubic_share_is_plain_matlab_bicubic(hr_folder):
    from sr.data.imresize import imresize

    opt = DatasetOptions(
        name="rw",
        type="RealESRGANDataset",
        dataroot_gt=str(hr_folder),
        gt_size=32,
        crop_pad_size=64,
        bicubic_prob=1.0,
    )
    dataset = build_dataset(
        opt, 4, "t", degradation=SecondOrderOptions(gt_size=32), usm_input=False, usm_target=False
    )
    sample = dataset[(0, 3)]
    gt = np.round(sample["gt"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    # the LR patch is cut from the bicubic LR of the whole 64 x 64 crop: interior pixels equal the patch's own
    lq = sample["lq"].numpy().transpose(1, 2, 0)
    expected = imresize(gt, 0.25).astype(np.float32) / 255
    np.testing.assert_array_equal(lq[2:-2, 2:-2], expected[2:-2, 2:-2])
    with pytest.raises(OptionsError, match="bicubic_prob: only RealESRGANDataset"):
        from sr.options import parse

        parse(DatasetOptions, {"name": "x", "type": "BicubicHRDataset", "bicubic_prob": 0.5}, Path("f.yml"))
