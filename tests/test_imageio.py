"""Tests of sr.imageio: exact decoding (16-bit files built by hand), modes, orientation, errors, output."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

import sr.imageio as imageio
from sr.imageio import IMAGE_EXTENSIONS, Image, ImageError, read_image, to_uint8, write_image

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (21, 34, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (13, 17, 3), dtype=np.uint16)
ALPHA16 = RNG.integers(0, 65536, (13, 17), dtype=np.uint16)


def _png16(arr: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (filter 0, one IDAT): gray, gray+alpha, RGB or RGBA by channel count."""
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _save(tmp_path: Path, name: str, pil: PILImage.Image, **options) -> Path:
    path = tmp_path / name
    pil.save(path, **options)
    return path


def _file_mode(path: Path) -> str:
    with PILImage.open(path) as pil:
        return pil.mode


# --- reading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.png", "a.bmp", "a.tif", "a.webp"])
def test_read_8bit_rgb_exact(tmp_path, name):
    options = {"lossless": True} if name.endswith(".webp") else {}
    img = read_image(_save(tmp_path, name, PILImage.fromarray(RGB8), **options))
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (21, 34, 3)
    assert img.alpha is None and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, RGB8.astype(np.float32) / 255)


def test_read_jpeg_is_rgb_8bit(tmp_path):
    path = _save(tmp_path, "a.jpg", PILImage.fromarray(RGB8), quality=95)
    img = read_image(path)
    assert img.pixels.shape == (21, 34, 3) and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, np.asarray(PILImage.open(path)).astype(np.float32) / 255)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_read_16bit_png_exact(tmp_path, channels):
    planes = {1: [RGB16[:, :, :1]], 2: [RGB16[:, :, :1], ALPHA16[:, :, None]], 3: [RGB16]}
    arr = np.concatenate(planes.get(channels, [RGB16, ALPHA16[:, :, None]]), axis=2)
    path = tmp_path / "deep.png"
    path.write_bytes(_png16(arr))
    img = read_image(path)
    colour = 1 if channels <= 2 else 3
    assert img.bit_depth == 16 and img.pixels.shape == (13, 17, colour)
    np.testing.assert_array_equal(img.pixels, arr[:, :, :colour].astype(np.float32) / 65535)
    if channels in (2, 4):
        np.testing.assert_array_equal(img.alpha, ALPHA16.astype(np.float32) / 65535)
    else:
        assert img.alpha is None


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_read_16bit_tiff_exact(tmp_path, channels):
    arr = np.concatenate([RGB16, ALPHA16[:, :, None]], axis=2)[:, :, :channels]
    path = tmp_path / "deep.tif"
    tifffile.imwrite(
        path, arr[:, :, 0] if channels == 1 else arr, photometric="minisblack" if channels == 1 else "rgb"
    )
    img = read_image(path)
    colour = min(channels, 3)
    assert img.bit_depth == 16 and img.pixels.shape == (13, 17, colour)
    np.testing.assert_array_equal(img.pixels, arr[:, :, :colour].astype(np.float32) / 65535)
    assert (img.alpha is not None) == (channels == 4)


def test_read_gray_and_gray_alpha(tmp_path):
    gray = RGB8[:, :, 0]
    img = read_image(_save(tmp_path, "g.png", PILImage.fromarray(gray)))
    assert img.pixels.shape == (21, 34, 1) and img.alpha is None
    np.testing.assert_array_equal(img.pixels[:, :, 0], gray / np.float32(255))
    img = read_image(_save(tmp_path, "ga.png", PILImage.fromarray(RGB8[:, :, :2])))
    assert img.pixels.shape == (21, 34, 1)
    np.testing.assert_array_equal(img.alpha, RGB8[:, :, 1] / np.float32(255))
    bilevel = PILImage.fromarray(gray > 128)
    np.testing.assert_array_equal(read_image(_save(tmp_path, "b.png", bilevel)).pixels[:, :, 0], gray > 128)


def test_read_palette_with_and_without_transparency(tmp_path):
    pal = PILImage.fromarray(RGB8).quantize(16)
    img = read_image(_save(tmp_path, "p.png", pal))
    assert img.pixels.shape == (21, 34, 3) and img.alpha is None
    np.testing.assert_array_equal(img.pixels, np.asarray(pal.convert("RGB")) / np.float32(255))
    img = read_image(_save(tmp_path, "pt.png", pal, transparency=3))
    expected_alpha = np.where(np.asarray(pal) == 3, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(img.alpha, expected_alpha)


def test_read_colour_key_transparency_becomes_alpha(tmp_path):
    gray = np.array([[0, 100], [200, 100]], dtype=np.uint8)
    img = read_image(_save(tmp_path, "k.png", PILImage.fromarray(gray), transparency=100))
    np.testing.assert_array_equal(img.alpha, [[1, 0], [1, 0]])


def test_read_cmyk_jpeg_as_rgb(tmp_path):
    path = _save(tmp_path, "c.jpg", PILImage.fromarray(RGB8).convert("CMYK"), quality=95)
    img = read_image(path)
    assert img.pixels.shape == (21, 34, 3)
    expected = np.asarray(PILImage.open(path).convert("RGB")) / np.float32(255)
    np.testing.assert_array_equal(img.pixels, expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, "o.png", PILImage.fromarray(RGB8), exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(PILImage.open(path)))
    np.testing.assert_array_equal(read_image(path).pixels, upright / np.float32(255))


def test_rotated_jpeg_comes_out_upright(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white as stored; orientation 6 means "rotate 90° clockwise to view"
    exif = PILImage.Exif()
    exif[0x0112] = 6
    img = read_image(_save(tmp_path, "r.jpg", PILImage.fromarray(stored), exif=exif, quality=95))
    assert img.pixels.shape == (40, 20, 3)
    assert img.pixels[:20].mean() > 0.95 and img.pixels[20:].mean() < 0.05  # white on top after rotation


def test_16bit_png_with_orientation(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 8
    png = _png16(RGB16)
    path = tmp_path / "o16.png"
    eXIf = exif.tobytes()
    # insert an eXIf chunk after IHDR (8-byte signature + 25-byte IHDR chunk)
    chunk = struct.pack(">I", len(eXIf)) + b"eXIf" + eXIf + struct.pack(">I", zlib.crc32(b"eXIf" + eXIf))
    path.write_bytes(png[:33] + chunk + png[33:])
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, np.rot90(RGB16, 1).astype(np.float32) / 65535)


# --- read failures ---------------------------------------------------------------------------------------


def _error(path) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message[len(f"{path}: ") :]


def test_missing_directory_and_empty(tmp_path):
    assert _error(tmp_path / "nope.png") == "cannot read (No such file or directory)"
    assert _error(tmp_path) == "cannot read (Is a directory)"
    (tmp_path / "empty.png").write_bytes(b"")
    assert _error(tmp_path / "empty.png") == "empty file"


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    path.write_bytes(b"x")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(imageio, "open", denied, raising=False)  # works even when the tests run as root
    assert _error(path) == "cannot read (Permission denied)"


def test_not_an_image(tmp_path):
    path = tmp_path / "b.jpg"
    path.write_bytes(b"%PDF-1.4 not really an image")
    assert _error(path) == "not an image (file starts with b'%PDF')"


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow warns about the cut TIFF header
@pytest.mark.parametrize(
    ("name", "fmt"), [("t.png", "PNG"), ("t.jpg", "JPEG"), ("t.bmp", "BMP"), ("t.tif", "TIFF")]
)
def test_truncated_files_fail_inside_read(tmp_path, name, fmt):
    big = PILImage.fromarray(np.tile(RGB8, (4, 4, 1)))
    full = _save(tmp_path, "full" + name[1:], big).read_bytes()
    (tmp_path / name).write_bytes(full[: len(full) // 2])
    assert _error(tmp_path / name).startswith(f"truncated {fmt} data")
    (tmp_path / name).write_bytes(full[:30])  # cut inside the header
    assert _error(tmp_path / name).startswith(
        (f"truncated {fmt} data", f"unreadable {fmt} file (damaged, truncated")
    )


def test_truncated_16bit_png(tmp_path):
    data = _png16(RGB16)
    (tmp_path / "t16.png").write_bytes(data[: len(data) // 2])
    assert _error(tmp_path / "t16.png").startswith("truncated PNG data")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_save(tmp_path, "c.png", PILImage.fromarray(RGB8)).read_bytes())
    data[100] ^= 0xFF
    (tmp_path / "c.png").write_bytes(bytes(data))
    assert _error(tmp_path / "c.png").startswith("cannot decode PNG data")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = _save(tmp_path, "big.png", PILImage.fromarray(RGB8))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # errors above twice this, warns above it
    assert _error(path).startswith("refused: Image size (714 pixels) exceeds limit")


def test_unsupported_variants(tmp_path):
    path = _save(tmp_path, "f.tif", PILImage.fromarray(np.zeros((4, 4), np.float32)))
    assert _error(path) == "32-bit floating-point samples are not supported (8- and 16-bit images only)"
    tifffile.imwrite(tmp_path / "p.tif", RGB16.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    assert _error(tmp_path / "p.tif") == "unsupported TIFF variant (16-bit samples stored in separate planes)"
    tifffile.imwrite(tmp_path / "u.tif", RGB16.astype(np.uint32), photometric="rgb")  # Pillow cannot open it
    assert _error(tmp_path / "u.tif").startswith("unreadable TIFF file")


# --- writing ---------------------------------------------------------------------------------------------


def _image(channels: int, alpha: bool = False, depth: int = 8) -> Image:
    top = 65535 if depth == 16 else 255
    values = RNG.integers(0, top + 1, (9, 11, channels + alpha)).astype(np.float32) / top
    return Image(values[:, :, :channels], values[:, :, channels] if alpha else None, depth)


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp"])
@pytest.mark.parametrize("channels", [1, 3])
def test_write_8bit_lossless_roundtrip(tmp_path, ext, channels):
    img = _image(channels)
    write_image(tmp_path / f"o{ext}", img)
    back = read_image(tmp_path / f"o{ext}")
    np.testing.assert_array_equal(back.pixels, img.pixels)
    assert _file_mode(tmp_path / f"o{ext}") == ("L" if channels == 1 else "RGB")


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_write_alpha_roundtrip(tmp_path, ext, channels):
    img = _image(channels, alpha=True)
    write_image(tmp_path / f"o{ext}", img)
    back = read_image(tmp_path / f"o{ext}")
    np.testing.assert_array_equal(back.pixels, img.pixels)
    np.testing.assert_array_equal(back.alpha, img.alpha)
    assert _file_mode(tmp_path / f"o{ext}") == ("LA" if channels == 1 else "RGBA")


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize(("channels", "alpha"), [(1, False), (3, False), (3, True)])
def test_write_16bit_roundtrip(tmp_path, ext, channels, alpha):
    img = _image(channels, alpha=alpha, depth=16)
    write_image(tmp_path / f"o{ext}", img)
    back = read_image(tmp_path / f"o{ext}")
    assert back.bit_depth == 16
    np.testing.assert_array_equal(back.pixels, img.pixels)
    if alpha:
        np.testing.assert_array_equal(back.alpha, img.alpha)
    if ext == ".tif":  # an independent reader agrees on the stored samples
        stored = tifffile.imread(tmp_path / f"o{ext}")
        expected = np.concatenate([img.pixels] + ([img.alpha[:, :, None]] if alpha else []), axis=2)
        np.testing.assert_array_equal(stored.reshape(expected.shape), np.round(expected * 65535))


def test_write_16bit_png_header_and_gray_alpha(tmp_path):
    write_image(tmp_path / "g.png", _image(1, depth=16))
    assert (tmp_path / "g.png").read_bytes()[24:26] == bytes([16, 0])  # 16-bit grayscale
    img = _image(1, alpha=True, depth=16)
    write_image(tmp_path / "ga.png", img)
    assert (tmp_path / "ga.png").read_bytes()[24:26] == bytes([16, 6])  # stored as 16-bit RGBA
    back = read_image(tmp_path / "ga.png")
    np.testing.assert_array_equal(back.pixels, np.repeat(img.pixels, 3, axis=2))
    np.testing.assert_array_equal(back.alpha, img.alpha)


def test_16bit_source_written_as_jpeg_is_8bit(tmp_path):
    write_image(tmp_path / "o.jpg", _image(3, alpha=True, depth=16))
    assert _file_mode(tmp_path / "o.jpg") == "RGB"


@pytest.mark.parametrize(("ext", "mode"), [(".jpg", "RGB"), (".bmp", "RGB"), (".webp", "RGBA")])
def test_alpha_kept_or_dropped(tmp_path, ext, mode):
    write_image(tmp_path / f"o{ext}", _image(3, alpha=True))
    assert _file_mode(tmp_path / f"o{ext}") == mode


@pytest.mark.parametrize("ext", [".jpg", ".webp"])
def test_quality(tmp_path, ext):
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    smooth = np.stack([x / 63, y / 47, 0.5 + 0.4 * np.sin(x / 5) * np.cos(y / 7)], axis=2)
    img = Image(smooth)
    write_image(tmp_path / f"lo{ext}", img, quality=10)
    write_image(tmp_path / f"hi{ext}", img, quality=95)
    assert (tmp_path / f"lo{ext}").stat().st_size < (tmp_path / f"hi{ext}").stat().st_size
    assert np.abs(read_image(tmp_path / f"hi{ext}").pixels - img.pixels).mean() < 0.01


def test_write_replaces_atomically_and_leaves_no_temp(tmp_path):
    path = tmp_path / "o.png"
    path.write_bytes(b"old")
    write_image(path, _image(3))
    assert os.listdir(tmp_path) == ["o.png"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_replace_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "o.png"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, "replace", broken_replace)
    with pytest.raises(ImageError, match=r"o\.png: cannot write \(No space left on device\)$"):
        write_image(path, _image(3))
    assert os.listdir(tmp_path) == ["o.png"] and path.read_bytes() == b"old"


def test_write_errors(tmp_path):
    with pytest.raises(ImageError, match=r"o\.gif: unknown image extension '\.gif'"):
        write_image(tmp_path / "o.gif", _image(3))
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "missing" / "o.png", _image(3))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "d.png", _image(3))
    with pytest.raises(ValueError, match="pixels"):
        write_image(tmp_path / "o.png", Image(np.zeros((4, 4, 2), np.float32)))
    with pytest.raises(ValueError, match="alpha"):
        write_image(tmp_path / "o.png", Image(np.zeros((4, 4, 3), np.float32), np.zeros((4, 5))))
    with pytest.raises(ValueError, match="quality"):
        write_image(tmp_path / "o.jpg", _image(3), quality=101)
    assert sorted(os.listdir(tmp_path)) == ["d.png"]


def test_encoder_failure_is_an_image_error(tmp_path):
    too_wide = Image(np.zeros((1, 17000, 3), np.float32))  # WebP's limit is 16383 pixels a side
    with pytest.raises(ImageError, match=r"w\.webp: cannot encode WEBP"):
        write_image(tmp_path / "w.webp", too_wide)
    assert os.listdir(tmp_path) == []


def test_to_uint8():
    x = np.array([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 254.5 / 255, 1.0, 1.7, np.inf], dtype=np.float32)
    out = to_uint8(x)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 128, 254, 255, 255, 255])
    # float32 arithmetic as BasicSR's tensor2img: (clip(x) * 255.0).round() on float32
    y = RNG.random(10000, dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(y), (y * np.float32(255.0)).round().astype(np.uint8))


def test_image_extensions():
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


def test_read_write_uppercase_extension(tmp_path):
    write_image(tmp_path / "O.PNG", _image(3))
    assert read_image(tmp_path / "O.PNG").pixels.shape == (9, 11, 3)
