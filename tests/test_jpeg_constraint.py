"""The JPEG quantisation constraint (`sr.jpeg_constraint`) against the codec itself: the tables libjpeg writes
(read back from OpenCV's and Pillow's files), the block DCT of OpenCV's `cv2.dct`, the original image lying in
the constraint set, and `sr restore --task jpeg` / `sr test --task jpeg` applying it."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

import sr
from sr.cli import main
from sr.imageio import read_image
from sr.jpeg_constraint import project, project_file, quality_table, read_table
from sr.upscale import run_pixels

WEIGHTS = np.array([0.299, 0.587, 0.114])


def photo(h: int = 64, w: int = 96, colour: bool = True) -> np.ndarray:
    """A smooth uint8 test picture with edges and texture, away from 0 and 255 (no clipping in the codec)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 128 + 50 * np.sin(x / 7) * np.cos(y / 11) + 30 * (x > w / 2) + 10 * np.sin(x * 1.3 + y * 0.7)
    channels = [base, base[:, ::-1] * 0.8 + 20, base[::-1] * 0.9 + 10] if colour else [base]
    return np.clip(np.stack(channels, axis=2), 20, 235).round().astype(np.uint8)


def cv2_jpeg(image: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    """OpenCV's JPEG bytes of an RGB or gray uint8 image, and its decoding (same layout)."""
    planar = image[..., ::-1] if image.shape[2] == 3 else image[..., 0]
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(planar), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    flag = cv2.IMREAD_COLOR if image.shape[2] == 3 else cv2.IMREAD_GRAYSCALE
    decoded = cv2.imdecode(data, flag)
    return data.tobytes(), (decoded[..., ::-1] if image.shape[2] == 3 else decoded[..., None]).copy()


def block_coefficients(plane: np.ndarray) -> np.ndarray:
    """8×8 DCT coefficients of every full block, by OpenCV's own DCT (orthonormal DCT-II)."""
    h, w = plane.shape[0] // 8 * 8, plane.shape[1] // 8 * 8
    return np.array(
        [
            [cv2.dct(np.ascontiguousarray(plane[i : i + 8, j : j + 8])) for j in range(0, w, 8)]
            for i in range(0, h, 8)
        ]
    )


def luma(image: np.ndarray) -> np.ndarray:
    """The JPEG luma plane, level-shifted, in 0..1 units (float64)."""
    return image.astype(np.float64) @ (WEIGHTS if image.shape[2] == 3 else np.ones(1)) - 128 / 255


@pytest.mark.parametrize("quality", range(1, 101))
def test_quality_table_is_what_the_encoders_write(quality):
    data, _ = cv2_jpeg(photo(16, 16, colour=False), quality)
    assert np.array_equal(read_table(data)[0], quality_table(quality))
    if quality % 10 == 5:
        written = io.BytesIO()
        PILImage.fromarray(photo(16, 16)).save(written, "JPEG", quality=quality)
        assert np.array_equal(read_table(written.getvalue())[0], quality_table(quality))


@pytest.mark.parametrize("colour", [False, True])
@pytest.mark.parametrize("quality", [10, 50, 90])
def test_the_original_lies_in_the_set_and_stays_put(colour, quality):
    clean = photo(colour=colour)
    data, decoded = cv2_jpeg(clean, quality)
    original = clean.astype(np.float32) / 255
    table = read_table(data)[0]
    kept = project(original, decoded.astype(np.float32) / 255, table)
    # The original's coefficients are inside its own intervals up to the encoder's arithmetic: libjpeg's
    # integer DCT leaves a coefficient near an interval's edge a few hundredths of a level outside it, and a
    # colour file's luma, read back from decoded RGB, also carries the chroma's rounding.
    moved = np.abs(kept - original) * 255
    assert moved.max() < (0.05 if not colour else 0.3)
    assert np.sqrt(np.mean(moved**2)) < (0.005 if not colour else 0.05)


@pytest.mark.parametrize("colour", [False, True])
def test_projection_lands_in_the_intervals_and_never_moves_away_from_the_original(colour):
    clean = photo(colour=colour)
    data, decoded = cv2_jpeg(clean, 30)
    table = read_table(data)[0]
    original, dec = clean.astype(np.float64) / 255, decoded.astype(np.float32) / 255
    rng = np.random.default_rng(1)
    for restored in (
        cv2.GaussianBlur(dec, (5, 5), 1.5).reshape(dec.shape),  # smoothed: what a network errs towards
        np.clip(dec + rng.normal(0, 0.03, dec.shape), 0, 1).astype(np.float32),
    ):
        out = project(restored, dec, table)
        levels = np.rint(block_coefficients(luma(dec) * 255) / table)
        coeffs = block_coefficients(luma(out) * 255)
        assert np.all(np.abs(coeffs - levels * table) <= table / 2 + 1e-3)
        assert np.linalg.norm(out - original) <= np.linalg.norm(restored - original)
        assert np.abs(project(out, dec, table) - out).max() < 1e-5  # a projection: idempotent
        if colour:  # only luma moves: R, G and B change alike
            change = out.astype(np.float64) - restored
            inside = (out > 0) & (out < 1)
            spread = np.ptp(change, axis=2)[inside.all(axis=2)]
            assert spread.max() < 1e-5


def test_blocks_cut_by_the_edges_are_left_alone():
    clean = photo(21, 30)
    data, decoded = cv2_jpeg(clean, 20)
    dec = decoded.astype(np.float32) / 255
    restored = cv2.GaussianBlur(dec, (5, 5), 2)
    out = project(restored, dec, read_table(data)[0])
    assert np.array_equal(out[16:], restored[16:]) and np.array_equal(out[:, 24:], restored[:, 24:])
    assert not np.allclose(out[:16, :24], restored[:16, :24])
    tiny = dec[:5, :7]
    assert np.array_equal(project(tiny, tiny, quality_table(50)), tiny)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_file_projection_follows_the_exif_orientation(tmp_path, orientation):
    clean = photo(48, 64)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    PILImage.fromarray(clean).save(path, "JPEG", quality=40, exif=exif.tobytes())
    shown = read_image(path).pixels  # EXIF orientation applied
    stored = np.asarray(PILImage.open(path).convert("RGB")).astype(np.float32) / 255
    restored = cv2.GaussianBlur(shown, (5, 5), 1.5)
    turns = {1: 0, 3: 2, 6: 3, 8: 1}[orientation]  # counter-clockwise quarter turns from stored to shown
    expected = project(np.rot90(restored, -turns), stored, quality_table(40))
    assert np.allclose(project_file(restored, shown, path), np.rot90(expected, turns), atol=1e-6)


def test_files_without_usable_tables_are_left_alone(tmp_path):
    restored = np.full((16, 16, 3), 0.5, np.float32)
    png = tmp_path / "a.png"
    PILImage.fromarray(photo(16, 16)).save(png)
    cmyk = tmp_path / "cmyk.jpg"
    PILImage.fromarray(photo(16, 16)).convert("CMYK").save(cmyk, "JPEG")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    for path in (png, cmyk, tmp_path / "broken.jpg"):
        assert read_table(path) is None
        assert project_file(restored, restored, path) is restored


def test_restore_jpeg_files_are_constrained_unless_asked_not_to(tmp_path, capsys):
    path = tmp_path / "photo.jpg"
    PILImage.fromarray(photo(40, 56)).save(path, "JPEG", quality=85)
    pixels = read_image(path).pixels
    raw = run_pixels(sr.load_model("jpeg"), pixels)
    for flags, expected in (
        ([], project_file(raw, pixels, path)),
        (["--no-jpeg-constraint"], raw),
    ):
        out = tmp_path / f"out{len(flags)}.png"
        assert main(["restore", str(path), "--task", "jpeg", "-o", str(out), *flags]) == 0
        assert np.abs(read_image(out).pixels - expected).max() <= 0.5 / 255 + 1e-6
    assert "quantisation intervals" in capsys.readouterr().out
    assert main(["restore", str(path), "--task", "denoise", "--no-jpeg-constraint", "-o", str(tmp_path)]) == 2
    assert "--no-jpeg-constraint: only with --task jpeg" in capsys.readouterr().err
    assert not np.allclose(project_file(raw, pixels, path), raw, atol=1 / 255)


def test_test_command_says_which_output_it_scores(tmp_path, capsys):
    (tmp_path / "Mini").mkdir()
    PILImage.fromarray(photo(32, 40)).save(tmp_path / "Mini" / "a.png")
    args = ["test", "--task", "jpeg", "--quality", "90", "-d", "Mini", "--datasets-root", str(tmp_path)]
    assert main(args) == 0
    assert main([*args, "--no-jpeg-constraint"]) == 0
    out = capsys.readouterr().out
    assert "quality 90, constrained" in out and "quality 90  (" in out
    assert main(["test", "--task", "denoise", "--no-jpeg-constraint", "-d", "Mini"]) == 2
    assert "--no-jpeg-constraint: only for --task jpeg" in capsys.readouterr().err
