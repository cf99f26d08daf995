"""Image files for the CLI and evaluation: decode to float32 arrays in [0, 1], encode and write atomically.

Pillow does the work; OpenCV (imported only then) handles the 16-bit colour PNG/TIFF Pillow cannot hold.
"""

import contextlib
import io
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF"}
_DEEP_FORMATS = {"PNG", "TIFF"}
_GRAY16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WEBP",
}
# Pillow mode -> the mode it is converted to before becoming an array (8 bits per channel).
_CONVERT = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "La": "LA",
    "P": "RGB",
    "PA": "RGBA",
    "RGB": "RGB",
    "RGBX": "RGB",
    "YCbCr": "RGB",
    "CMYK": "RGB",
    "RGBA": "RGBA",
    "RGBa": "RGBA",
}
# EXIF orientation -> (swap axes, flip rows, flip columns), in that order, that make the image upright.
_ORIENTATIONS = {
    2: (False, False, True),
    3: (False, True, True),
    4: (False, True, False),
    5: (True, False, False),
    6: (True, False, True),
    7: (True, True, True),
    8: (True, True, False),
}
_EXIF_ORIENTATION = 0x0112


class ImageError(Exception):
    """An image file that cannot be read or written; ``str()`` is one line, ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = os.fsdecode(path)
        super().__init__(f"{self.path}: {' '.join(problem.split())}")


@dataclass
class Image:
    """A decoded image: pixels float32 H x W x C (C 1 = gray, 3 = RGB) in [0, 1], optional H x W alpha."""

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8  # bits per channel of the source (8 or 16); 16 keeps PNG/TIFF output at 16 bits


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] floats to uint8: clip, multiply by 255, ``np.round`` (half to even), cast.

    The arithmetic stays in the input's float dtype, so float32 input gives exactly BasicSR ``tensor2img``'s
    bytes. Written files and images to be scored quantise through this one function.
    """
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def _to_uint16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(path, f"cannot read ({e.strerror or e})") from None
    if not data:
        raise ImageError(path, "empty file")
    return data


def _sniff(data: bytes) -> str | None:
    """The format a file claims by its first bytes, for messages about files Pillow could not open."""
    return next((fmt for signature, fmt in _SIGNATURES.items() if data.startswith(signature)), None)


def _decode_problem(fmt: str, error: Exception) -> str:
    detail = str(error) or type(error).__name__
    if isinstance(error, EOFError) or "truncated" in detail.lower():
        return f"truncated {fmt} data ({detail})"
    return f"cannot decode {fmt} data ({detail})"


def _is_deep_colour(pil: PILImage.Image, data: bytes) -> bool:
    """True for 16-bit colour or gray+alpha PNG/TIFF, which Pillow would truncate to 8 bits."""
    if pil.format == "PNG":  # IHDR is the first chunk: bit depth at byte 24, colour type at byte 25
        return data[24] == 16 and data[25] in (2, 4, 6)
    if pil.format == "TIFF" and pil.mode not in _GRAY16_MODES:
        bits = pil.tag_v2.get(258, 8)
        return set(bits if isinstance(bits, tuple) else (bits,)) == {16}
    return False


def _decode_deep(path: str | os.PathLike, pil: PILImage.Image, data: bytes) -> np.ndarray:
    """16-bit PNG/TIFF through OpenCV: H x W x C uint16 with channels in L, LA, RGB or RGBA order.

    Pillow has already decoded (and so validated) the file; it only cannot keep more than 8 bits per channel.
    """
    if pil.format == "TIFF" and pil.tag_v2.get(284) == 2:  # OpenCV misreads 16-bit planes as interleaved
        raise ImageError(path, "unsupported TIFF variant (16-bit samples stored in separate planes)")
    import cv2

    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is not None and arr.ndim == 2:
        arr = arr[:, :, None]
    if arr is None or arr.dtype != np.uint16 or arr.shape[2] > 4:
        layout = "undecodable" if arr is None else f"{arr.dtype} x {arr.shape[2]} channels"
        raise ImageError(path, f"unsupported 16-bit {pil.format} variant ({layout})")
    if arr.shape[2] >= 3:  # OpenCV's BGR(A)
        arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
    if pil.format == "PNG" and data[25] == 4:  # gray+alpha, which OpenCV expands to RGBA
        arr = arr[:, :, [0, 3]]
    return arr


def _decode_pillow(path: str | os.PathLike, pil: PILImage.Image) -> np.ndarray:
    """H x W x C uint8 (L, LA, RGB, RGBA) or uint16 (16-bit gray) array of a loaded Pillow image."""
    if pil.mode in _GRAY16_MODES:
        return np.asarray(pil).astype(np.uint16)[:, :, None]
    if pil.mode in ("F", "I"):
        kind = "floating-point" if pil.mode == "F" else "integer"
        raise ImageError(path, f"32-bit {kind} samples are not supported (8- and 16-bit images only)")
    target = _CONVERT.get(pil.mode)
    if target is None:
        raise ImageError(path, f"unsupported pixel format (Pillow mode {pil.mode})")
    if pil.has_transparency_data:  # palette or colour-key transparency becomes alpha
        target = {"L": "LA", "RGB": "RGBA"}.get(target, target)
    arr = np.asarray(pil if pil.mode == target else pil.convert(target))
    return arr if arr.ndim == 3 else arr[:, :, None]


def orient(arr: np.ndarray, orientation: int, *, inverse: bool = False) -> np.ndarray:
    """An H x W (x C) array as shown under EXIF `orientation` 1..8 (`inverse`: back to the stored layout)."""
    swap, flip_rows, flip_cols = _ORIENTATIONS.get(orientation, (False, False, False))
    if swap and not inverse:
        arr = arr.swapaxes(0, 1)
    if flip_rows:
        arr = arr[::-1]
    if flip_cols:
        arr = arr[:, ::-1]
    if swap and inverse:
        arr = arr.swapaxes(0, 1)
    return arr


def read_image(path: str | os.PathLike) -> Image:
    """Read and fully decode an image file, applying its EXIF orientation.

    Gray (with or without alpha) gives C == 1, anything else RGB; palette, CMYK and YCbCr become RGB; alpha
    (including palette transparency) is returned separately. 16-bit sources give ``bit_depth`` 16 and values
    / 65535, 8-bit ones / 255. Every failure raises ``ImageError`` naming the file.
    """
    data = _read_bytes(path)
    try:
        pil = PILImage.open(io.BytesIO(data))
    except UnidentifiedImageError:
        claimed = _sniff(data)
        if claimed:
            raise ImageError(
                path, f"unreadable {claimed} file (damaged, truncated or an unsupported variant)"
            ) from None
        raise ImageError(path, f"not an image (file starts with {data[:4]!r})") from None
    except PILImage.DecompressionBombError as e:  # Pillow checks the pixel count when opening
        raise ImageError(path, f"refused: {e}") from None
    except OSError as e:  # a recognised format whose header is cut short or damaged
        raise ImageError(path, _decode_problem(_sniff(data) or "image", e)) from None
    with pil:
        frames = getattr(pil, "n_frames", 1)
        if frames > 1:
            kind = "pages" if pil.format == "TIFF" else "frames"
            raise ImageError(
                path,
                f"{pil.format} with {frames} {kind}: only single-frame images are supported (split it first)",
            )
        try:
            pil.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(path, _decode_problem(pil.format, e)) from None
        arr = _decode_deep(path, pil, data) if _is_deep_colour(pil, data) else _decode_pillow(path, pil)
        arr = orient(arr, pil.getexif().get(_EXIF_ORIENTATION, 1))
    depth = 16 if arr.dtype == np.uint16 else 8
    values = arr.astype(np.float32) / np.float32(65535 if depth == 16 else 255)
    colour = 1 if values.shape[2] <= 2 else 3
    alpha = np.ascontiguousarray(values[:, :, colour]) if values.shape[2] in (2, 4) else None
    return Image(pixels=np.ascontiguousarray(values[:, :, :colour]), alpha=alpha, bit_depth=depth)


def _check(image: Image, quality: int) -> None:
    pixels, alpha = np.shape(image.pixels), image.alpha
    if len(pixels) != 3 or pixels[2] not in (1, 3):
        raise ValueError(f"Image.pixels must be H x W x 1 or H x W x 3, got shape {pixels}")
    if alpha is not None and np.shape(alpha) != pixels[:2]:
        raise ValueError(f"Image.alpha must be H x W = {pixels[:2]}, got shape {np.shape(alpha)}")
    if not 0 <= quality <= 100:
        raise ValueError(f"quality must be in 0..100, got {quality}")


def _encode(image: Image, fmt: str, quality: int) -> bytes:
    planes = [np.asarray(image.pixels)]
    if image.alpha is not None and fmt in _ALPHA_FORMATS:
        planes.append(np.asarray(image.alpha)[:, :, None])
    if image.bit_depth == 16 and fmt in _DEEP_FORMATS:
        import cv2

        arr = _to_uint16(np.concatenate(planes, axis=2))
        if arr.shape[2] == 2:  # OpenCV cannot write two channels: gray+alpha is stored as RGBA
            arr = arr[:, :, [0, 0, 0, 1]]
        if arr.shape[2] >= 3:  # to OpenCV's BGR(A)
            arr = arr[:, :, [2, 1, 0, 3][: arr.shape[2]]]
        deflate = [cv2.IMWRITE_TIFF_COMPRESSION, cv2.IMWRITE_TIFF_COMPRESSION_ADOBE_DEFLATE]
        ok, buf = cv2.imencode(".png" if fmt == "PNG" else ".tiff", arr, deflate if fmt == "TIFF" else [])
        if not ok:
            raise OSError(f"OpenCV could not encode a 16-bit {fmt} of shape {arr.shape}")
        return buf.tobytes()
    arr = to_uint8(np.concatenate(planes, axis=2))
    pil = PILImage.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    options = {
        "JPEG": {"quality": quality},
        "WEBP": {"quality": quality},
        "TIFF": {"compression": "tiff_adobe_deflate"},
    }
    out = io.BytesIO()
    pil.save(out, format=fmt, **options.get(fmt, {}))
    return out.getvalue()


def write_image(path: str | os.PathLike, image: Image, *, quality: int = 95) -> None:
    """Write ``image`` in the format of the file extension, atomically (temporary file + ``os.replace``).

    8-bit output quantises with ``to_uint8``; PNG and TIFF stay 16-bit when ``image.bit_depth`` is 16 (16-bit
    gray+alpha is stored as RGBA). Grayscale is written single-channel, except WebP, which has no gray mode.
    Alpha is kept in PNG, WebP and TIFF and dropped in JPEG and BMP. ``quality`` (0..100) applies to JPEG and
    WebP. Unknown extensions and I/O or encoder failures raise ``ImageError`` and leave no file behind; a
    malformed ``image`` or ``quality`` raises ``ValueError``.
    """
    suffix = Path(path).suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        known = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise ImageError(path, f"unknown image extension {suffix!r} (use one of {known})")
    _check(image, quality)
    try:
        data = _encode(image, fmt, quality)
    except (OSError, ValueError) as e:
        raise ImageError(path, f"cannot encode {fmt} ({e})") from None
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ImageError(path, f"cannot write ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):  # gone already after a successful replace
            os.unlink(tmp)
