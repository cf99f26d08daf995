"""Tests of sr.data.imresize: a brute-force MATLAB transcription and the MATLAB-made LR files in ../shared."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr.data.imresize import imresize

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _kernel(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _reflect(i: int, n: int) -> int:
    """Half-sample symmetric reflection of a 0-based index into [0, n)."""
    while not 0 <= i < n:
        i = -1 - i if i < 0 else 2 * n - 1 - i
    return i


def _to_int(v: float, dtype: type) -> int:
    info = np.iinfo(dtype)
    return min(max(int(math.copysign(math.floor(abs(v) + 0.5), v)), info.min), info.max)


def _resize_line(line: list, out_len: int, scale: float, antialiasing: bool) -> list[float]:
    """One output sample at a time, as MATLAB's contributions() describes it in 1-based coordinates."""
    stretch = antialiasing and scale < 1
    width = 4 / scale if stretch else 4
    out = []
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        first = math.floor(u - width / 2)
        taps = range(first, first + math.ceil(width) + 2)
        w = [scale * _kernel(scale * (u - j)) if stretch else _kernel(u - j) for j in taps]
        total = sum(w)
        acc = 0.0
        for j, wj in zip(taps, w, strict=True):
            acc += wj / total * float(line[_reflect(j - 1, len(line))])
        out.append(acc)
    return out


def _reference(img: np.ndarray, scale: float, antialiasing: bool) -> np.ndarray:
    """Slow float64 transcription: rows then columns, integer types rounded after each pass like MATLAB."""
    integer = np.issubdtype(img.dtype, np.integer)
    a = img if img.ndim == 3 else img[:, :, None]
    h, w, c = a.shape
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    mid = np.zeros((oh, w, c))
    for x in range(w):
        for ch in range(c):
            col = _resize_line(list(a[:, x, ch]), oh, scale, antialiasing)
            mid[:, x, ch] = [_to_int(v, img.dtype) for v in col] if integer else col
    out = np.zeros((oh, ow, c))
    for y in range(oh):
        for ch in range(c):
            row = _resize_line(list(mid[y, :, ch]), ow, scale, antialiasing)
            out[y, :, ch] = [_to_int(v, img.dtype) for v in row] if integer else row
    out = out.astype(img.dtype) if integer else out
    return out if img.ndim == 3 else out[:, :, 0]


CASES = [
    ((7, 9), 0.5, True),
    ((10, 13, 3), 1 / 3, True),
    ((11, 8, 2), 0.25, True),
    ((9, 12), 0.37, True),
    ((9, 12, 3), 0.25, False),
    ((3, 2), 0.25, True),  # kernel (16 taps) far wider than the image: mirroring wraps more than once
    ((1, 1, 3), 0.5, True),
    ((5, 7, 3), 2, True),
    ((6, 5), 3, False),
    ((4, 7, 2), 1.5, True),
    ((5, 3), 4, True),
]


@pytest.mark.parametrize(("shape", "scale", "antialiasing"), CASES)
def test_float_matches_brute_force(shape, scale, antialiasing):
    img = np.random.default_rng(0).normal(0.5, 0.6, shape)
    out = imresize(img, scale, antialiasing=antialiasing)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, _reference(img, scale, antialiasing), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("shape", "scale", "antialiasing"), CASES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_matches_brute_force(shape, scale, antialiasing, dtype):
    hi = np.iinfo(dtype).max
    img = np.random.default_rng(1).integers(0, hi, shape, endpoint=True).astype(dtype)
    img.flat[::5] = hi  # saturated regions make the overshoot and clipping visible
    out = imresize(img, scale, antialiasing=antialiasing)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, _reference(img, scale, antialiasing))


def test_shapes_dtypes_and_invariants():
    rng = np.random.default_rng(2)
    img = rng.random((17, 23, 3))
    assert imresize(img, 1 / 3).shape == (6, 8, 3)
    assert imresize(img, 2.5).shape == (43, 58, 3)
    np.testing.assert_array_equal(imresize(img, 1), img)  # the cubic kernel interpolates: identity at scale 1
    np.testing.assert_allclose(imresize(np.full((9, 11), 0.3), 0.25), 0.3, rtol=1e-14)
    np.testing.assert_array_equal(imresize(img[:, :, 1], 0.5), imresize(img, 0.5)[:, :, 1])
    assert imresize(img.astype(np.float32), 0.5).dtype == np.float32
    np.testing.assert_allclose(imresize(img.astype(np.float32), 0.5), imresize(img, 0.5), atol=1e-6)


def test_uint8_rounds_half_away_from_zero():
    # One-row image upscaled x2: the weights are multiples of 1/128, so exact .5 results occur; 112.5 -> 113
    # (numpy's round-half-even would give 112).
    row = np.array([[20, 76, 123, 108, 103, 7]], dtype=np.uint8)
    exact = imresize(row.astype(np.float64), 2)
    ties = exact == 112.5
    assert ties.sum() == 2
    assert (imresize(row, 2)[ties] == 113).all()


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), float("nan"))
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 4, 4, 3)), 0.5)
    with pytest.raises(ValueError, match="empty"):
        imresize(np.zeros((0, 4)), 0.5)
    with pytest.raises(TypeError, match="dtype"):
        imresize(np.zeros((4, 4), dtype=bool), 0.5)


def _agreement(hr_path: Path, lr_path: Path, scale: int) -> tuple[int, int, int]:
    """(identical pixels, all pixels, largest abs difference) of imresize(cropped HR, 1/s) vs stored LR."""
    hr = np.asarray(Image.open(hr_path))
    lr = np.asarray(Image.open(lr_path))
    h, w = lr.shape[:2]
    out = imresize(hr[: h * scale, : w * scale], 1 / scale)
    diff = np.abs(out.astype(np.int16) - lr.astype(np.int16))
    return int((diff == 0).sum()), diff.size, int(diff.max())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_lr_files_reproduced(shared_dir, scale):
    """The EDSR/SwinIR Set5 LR files were made by MATLAB imresize: every pixel must match."""
    root = shared_dir / "data" / "benchmarks" / "Set5"
    same = total = worst = 0
    for name in SET5:
        s, t, m = _agreement(root / "HR" / f"{name}.png", root / f"LR_bicubic/X{scale}/{name}.png", scale)
        same, total, worst = same + s, total + t, max(worst, m)
    report = f"x{scale}: {100 * same / total:.4f}% identical, max diff {worst}"
    assert same / total >= 0.99 and worst <= 1, report
    assert same == total, report


@pytest.mark.parametrize("name", ["0004", "0006"])
def test_div2k_smoke_lr_reproduced(shared_dir, name):
    """The DIV2K X4 LR (2040 px sides) is MATLAB-made too; also exercises full-size speed."""
    root = shared_dir / "data" / "DIV2K_smoke"
    same, total, worst = _agreement(root / f"HR/{name}.png", root / f"LR_bicubic/X4/{name}.png", 4)
    assert same == total, f"{name}: {100 * same / total:.4f}% identical, max diff {worst}"
