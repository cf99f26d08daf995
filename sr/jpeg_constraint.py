"""The JPEG quantisation constraint: after artifact removal, pull each 8×8 luma block's DCT coefficients back
into the quantisation interval the JPEG file stored for them, where the original image's coefficients lie.

A JPEG file keeps, per 8×8 block, each DCT coefficient rounded to a multiple of its quantisation step q: the
original coefficient lies within ±q/2 of the stored one. That set of images is convex and holds the original,
and the block DCT is orthonormal, so clipping a restored image's coefficients into it (the projection onto
the set, the "quantisation constraint set" of POCS JPEG decoding: Zakhor, IEEE TCSVT 1992; Yang, Galatsanos
and Katsaggelos, IEEE TCSVT 1995) never moves the image further from the original, and where the steps are
small (high qualities) it keeps a network from smoothing away detail the file still holds.

Only the luma channel is constrained (a gray image, or Y = 0.299 R + 0.587 G + 0.114 B of a colour one, the
JFIF transform; its change is added to R, G and B alike, which leaves Cb and Cr as they were): colour files
store chroma subsampled, whose intervals the decoded pixels do not pin down. Blocks cut by the right or bottom
edge are left as restored (the encoder padded them with pixels the decoded image does not show).
"""

from __future__ import annotations

import io
import os

import numpy as np
from scipy.fft import dctn, idctn

# libjpeg's example luminance table (ITU-T T.81 Annex K, Table K.1), natural order, scaled by quality below
_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ]
)
_JFIF_LUMA = np.array([0.299, 0.587, 0.114])


def quality_table(quality: int) -> np.ndarray:
    """The 8×8 luma quantisation table libjpeg writes at `quality` 1..100 with baseline limits, as OpenCV's
    and Pillow's encoders do (`jpeg_set_quality(cinfo, quality, TRUE)`: scale 5000/q below 50, else
    200 − 2q)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, got {quality}")
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_LUMA_TABLE * scale + 50) // 100, 1, 255).astype(np.float64)


def read_table(path: str | os.PathLike | bytes) -> tuple[np.ndarray, int] | None:
    """(the luma quantisation table, the EXIF orientation) of a JPEG file (a path or its bytes), or None for
    anything the constraint cannot use: not a JPEG, CMYK, or components that are not Y (Adobe RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as pil:
            if pil.format != "JPEG" or pil.mode not in ("L", "RGB") or pil.info.get("adobe_transform") == 0:
                return None
            tables = pil.quantization
            which = pil.layer[0][3] if getattr(pil, "layer", None) else 0
            orientation = pil.getexif().get(0x0112, 1)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    if which not in tables or len(tables[which]) != 64:
        return None
    return np.asarray(tables[which], dtype=np.float64).reshape(8, 8), orientation


def _blocks(plane: np.ndarray) -> np.ndarray:
    h, w = plane.shape
    return plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3)


def project(restored: np.ndarray, decoded: np.ndarray, table: np.ndarray) -> np.ndarray:
    """`restored` (H x W x C floats in [0, 1], C 1 or 3) with its luma's block-DCT coefficients clipped into
    the quantisation intervals of the `decoded` JPEG image (same layout, as the file decodes, not rotated)
    under the 8×8 luma `table`; float32, clamped to [0, 1]."""
    if restored.shape != decoded.shape or restored.ndim != 3 or restored.shape[2] not in (1, 3):
        raise ValueError(f"project() takes two H x W x 1 or 3 images, got {restored.shape}, {decoded.shape}")
    h, w = (restored.shape[0] // 8) * 8, (restored.shape[1] // 8) * 8
    if not h or not w:
        return restored.astype(np.float32)
    weights = _JFIF_LUMA if restored.shape[2] == 3 else np.ones(1)
    luma_restored = restored[:h, :w].astype(np.float64) @ weights * 255 - 128
    luma_decoded = decoded[:h, :w].astype(np.float64) @ weights * 255 - 128
    coeffs = dctn(_blocks(luma_restored), axes=(2, 3), norm="ortho")
    levels = np.rint(dctn(_blocks(luma_decoded), axes=(2, 3), norm="ortho") / table)
    change = np.clip(coeffs, (levels - 0.5) * table, (levels + 0.5) * table) - coeffs
    delta = idctn(change, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(h, w)
    out = restored.astype(np.float64)
    out[:h, :w] += delta[..., None] / 255
    return np.clip(out, 0, 1).astype(np.float32)


def project_file(restored: np.ndarray, decoded: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """`project` with the table of the JPEG file at `path`, which `decoded` was read from (`sr.imageio`, EXIF
    orientation applied: undone here and redone, so the blocks line up); `restored` unchanged when the file
    holds nothing usable (see `read_table`)."""
    from sr.imageio import orient

    found = read_table(path)
    if found is None:
        return restored
    table, orientation = found
    stored = [orient(image, orientation, inverse=True) for image in (restored, decoded)]
    in_file = project(*stored, table)
    return np.ascontiguousarray(orient(in_file, orientation))
