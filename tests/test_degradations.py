"""Degradations and restoration metrics against independent truth: the papers' JPEG-input table rows, the
codec's own output, a hand-computed blocking-effect factor, noise statistics, the CBSD68 decode sums, and
OpenCV's own reading of files for the official script's gray conversion."""

from __future__ import annotations

import hashlib
import math

import cv2
import numpy as np
import pytest

from sr.data.degradations import add_noise, check_quality, check_sigma, jpeg, official_noise, to_gray, to_luma
from sr.imageio import read_image, to_uint8
from sr.metrics import blocking_effect_factor, psnrb
from sr.tasks import JPEG, Denoise, find_set, matlab_rgb2gray, score

# The JPEG-compressed input itself ("JPEG" rows), gray, quality 10/20/30/40: PSNR and SSIM as in FBCNN's
# table (Jiang et al., ICCV 2021, Table 1; jiaxi-jiang/FBCNN README figure, the same rows as ARCNN's and
# DnCNN's tables), PSNR-B from the same table (QGCN's agrees on LIVE1).
PUBLISHED_JPEG_INPUT = {
    ("Classic5", 10): (27.82, 0.760, 25.21),
    ("Classic5", 20): (30.12, 0.834, 27.50),
    ("Classic5", 30): (31.48, 0.867, 28.94),
    ("Classic5", 40): (32.43, 0.885, 29.92),
    ("LIVE1_gray", 10): (27.77, 0.773, 25.33),
    ("LIVE1_gray", 20): (30.07, 0.851, 27.57),
    ("LIVE1_gray", 30): (31.41, 0.885, 28.92),
    ("LIVE1_gray", 40): (32.35, 0.904, 29.96),
}


@pytest.mark.parametrize("set_name", ["Classic5", "LIVE1_gray"])
def test_jpeg_input_reproduces_the_published_rows(shared_dir, set_name):
    test_set = find_set(set_name, shared_dir / "data" / "restoration")
    for quality in (10, 20, 30, 40):
        task = JPEG(quality)
        scores = []
        for path in test_set.files:
            clean = to_uint8(read_image(path).pixels)
            assert clean.shape[2] == 1
            scores.append(score(to_uint8(task.degrade(clean)), clean, task))
        means = {m: np.mean([s[m] for s in scores]) for m in task.metrics}
        psnr, ssim, psnr_b = PUBLISHED_JPEG_INPUT[set_name, quality]
        assert abs(means["psnr"] - psnr) <= 0.05, (set_name, quality, means)
        assert abs(means["psnrb"] - psnr_b) <= 0.05, (set_name, quality, means)
        assert abs(means["ssim"] - ssim) <= 0.001, (set_name, quality, means)


def test_jpeg_is_the_codec_output_in_opencv_layout():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (45, 70, 3)).astype(np.uint8), (7, 7), 2)
    bgr = np.ascontiguousarray(smooth[..., ::-1])
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok
    np.testing.assert_array_equal(jpeg(smooth, 30), cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    gray = smooth[..., :1]
    ok, data = cv2.imencode(".jpg", gray[..., 0], [cv2.IMWRITE_JPEG_QUALITY, 55])
    np.testing.assert_array_equal(jpeg(gray, 55)[..., 0], cv2.imdecode(data, cv2.IMREAD_GRAYSCALE))
    # Pillow's libjpeg at the same quality (standard tables, 4:2:0) decodes to the same pixels.
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(smooth).save(buffer, format="JPEG", quality=30)
    np.testing.assert_array_equal(jpeg(smooth, 30), np.asarray(Image.open(buffer).convert("RGB")))
    with pytest.raises(ValueError, match="uint8"):
        jpeg(smooth.astype(np.float32), 30)


def test_blocking_effect_factor_by_hand():
    # 16 x 16: four flat 8 x 8 blocks of 0.2, 0.4 / 0.6, 0.8. Only pairs across the block edges differ.
    x = np.kron(np.array([[0.2, 0.4], [0.6, 0.8]]), np.ones((8, 8)))
    # Row 7/8 pairs (16 of them, 0.4^2) and column 7/8 pairs (16, 0.2^2); the official denominators count
    # H·(W//8 − 1) = 16 boundary pairs per direction, and 16·15·2 − 32 = 448 others, all equal.
    boundary = (16 * 0.4**2 + 16 * 0.2**2) / 32
    expected = math.log2(8) / math.log2(16) * boundary
    assert blocking_effect_factor(x) == pytest.approx(expected, rel=1e-12)
    assert blocking_effect_factor(np.full((16, 16), 0.5)) == 0.0
    # Smooth ramps without block edges: no blocking, so PSNR-B equals PSNR.
    ramp = np.tile(np.linspace(0, 1, 24), (24, 1))
    assert blocking_effect_factor(ramp) == 0.0
    a = (ramp * 255)[..., None]
    b = np.clip(a + 3, 0, 255)
    mse = np.mean((a / 255 - b / 255) ** 2)
    assert psnrb(a, b) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    # The penalty is the restored image's (first argument) and lowers the score.
    blocky = (x * 255)[..., None]
    assert psnrb(blocky, np.clip(blocky + 2, 0, 255)) < 10 * math.log10(1 / np.mean((2 / 255) ** 2))


def test_official_noise_follows_the_seeded_script():
    # main_test_swinir.py: np.random.seed(0) per image, normal(0, sigma/255, shape) on the BGR image.
    np.random.seed(0)
    bgr = np.random.normal(0, 25 / 255.0, (6, 5, 3))
    np.testing.assert_array_equal(official_noise((6, 5, 3), 25), bgr[..., ::-1])
    np.random.seed(0)
    np.testing.assert_array_equal(official_noise((6, 5), 15), np.random.normal(0, 15 / 255.0, (6, 5)))
    noise = official_noise((400, 300, 3), 50)
    assert abs(noise.std() - 50 / 255) < 0.002 and abs(noise.mean()) < 0.001


def test_denoise_task_adds_unclipped_float_noise_or_clips_to_8_bits():
    clean = np.full((40, 50, 3), 250, dtype=np.uint8)
    noisy = Denoise(25).degrade(clean)
    assert noisy.dtype == np.float32 and noisy.max() > 1  # the papers' protocol keeps values beyond 1
    expected = (clean.astype(np.float32) / np.float32(255)).astype(np.float64) + official_noise(
        clean.shape, 25
    )
    np.testing.assert_array_equal(noisy, expected.astype(np.float32))
    quantized = Denoise(25, quantize=True).degrade(clean)
    assert quantized.max() == 1 and np.array_equal(np.round(quantized * 255), quantized * 255)
    gray = Denoise(15).degrade(clean[..., :1])
    assert gray.shape == (40, 50, 1)


def test_noise_statistics_and_quantization():
    rng = np.random.default_rng(1)
    clean = np.full((200, 200, 3), 0.5, dtype=np.float32)
    noise = rng.normal(0, 10 / 255, clean.shape)
    noisy = add_noise(clean, noise)
    assert abs((noisy - clean).std() * 255 - 10) < 0.1
    stored = add_noise(np.zeros_like(clean), noise, quantize=True)
    assert stored.min() == 0 and np.array_equal(np.round(stored * 255), stored * 255)
    # Clipped at black below 0, rounded to black below 0.5/255: P(z > 0.05) = 0.4801 of the draws stay.
    assert abs(np.mean(stored > 0) - 0.4801) < 0.005


def test_levels_out_of_range_are_refused():
    for bad in (0, -5, 256):
        with pytest.raises(ValueError, match="sigma"):
            check_sigma(bad)
    for bad in (0, 101, 2.5, True):
        with pytest.raises(ValueError, match="quality"):
            check_quality(bad)
    with pytest.raises(ValueError, match="sigma"):
        Denoise(300)
    with pytest.raises(ValueError, match="quality"):
        JPEG(0)


def test_gray_conversions_match_how_the_official_script_reads(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (30, 40, 3)).astype(np.uint8)
    path = str(tmp_path / "colour.png")
    cv2.imwrite(path, rgb[..., ::-1])
    # Denoising: cv2.imread(path, IMREAD_GRAYSCALE).
    np.testing.assert_array_equal(to_gray(rgb)[..., 0], cv2.imread(path, cv2.IMREAD_GRAYSCALE))
    # JPEG: BT.601 studio-range Y, rounded (util.bgr2ycbcr on uint8).
    y = 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255
    assert np.abs(to_luma(rgb)[..., 0].astype(float) - y).max() <= 0.5 + 1e-6
    # BSD68: MATLAB rgb2gray weights.
    g = 0.298936021293775 * rgb[..., 0] + 0.587043074451121 * rgb[..., 1] + 0.114020904255103 * rgb[..., 2]
    assert np.abs(matlab_rgb2gray(rgb)[..., 0].astype(float) - g).max() <= 0.5 + 1e-9


def test_cbsd68_decodes_to_the_standard_png_pixels(shared_dir):
    folder = shared_dir / "data" / "restoration"
    rows = [line.split("\t") for line in (folder / "CBSD68_pixels.tsv").read_text().splitlines()[1:]]
    test_set = find_set("CBSD68", folder)
    assert [p.name for p in test_set.files] == sorted(r[0] for r in rows) and len(rows) == 68
    expected = {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}
    for path in test_set.files[::7]:
        pixels = to_uint8(read_image(path).pixels)
        width, height, digest = expected[path.name]
        assert pixels.shape == (height, width, 3)
        assert hashlib.sha256(pixels.tobytes()).hexdigest()[:16] == digest
    bsd68 = find_set("BSD68", folder)
    assert bsd68.files == test_set.files and bsd68.gray is matlab_rgb2gray
