"""The inference engine: tensor in, tensor out, with blended tiling for large inputs.

Networks accept any input size and pad to their window themselves, the way their official model files do,
so results match the official code; the engine only rounds tile sides to the network's `multiple_of`.

Large inputs are cut into overlapping tiles whose outputs are blended with linear ramps across each overlap,
so memory stays bounded and seams do not show. Pixels next to a tile's cut edge get no weight, so for
convolutional networks the tiled result equals the untiled one to ~1e-5 (PAN, default overlap).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from sr.allocator import keep_freed_memory
from sr.loading import LoadedModel

# Inputs with more LR pixels than AUTO_TILE² are tiled by default, keeping CPU memory near a few GB at most.
AUTO_TILE = 512
DEFAULT_OVERLAP = 64

Progress = Callable[[int, int], None]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), consecutive ones sharing ≥ `overlap`."""
    if tile >= length:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(length: int, start_overlap: int, end_overlap: int) -> torch.Tensor:
    """1-D blending weights of a tile sharing `start_overlap`/`end_overlap` samples with its neighbours.

    Across an overlap of width F the weight is 0 over the outer F/4 (pixels that saw the tile's padded
    border), rises linearly over the middle F/2 and is 1 beyond, so two neighbours' weights sum to 1.
    """
    pos = torch.arange(length, dtype=torch.float32) + 0.5
    weight = torch.ones(length)
    if start_overlap:
        weight = torch.minimum(weight, ((pos - start_overlap / 4) / (start_overlap / 2)).clamp(0, 1))
    if end_overlap:
        weight = torch.minimum(weight, ((length - pos - end_overlap / 4) / (end_overlap / 2)).clamp(0, 1))
    return weight


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags)."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _autocast(device: torch.device, dtype: torch.dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def upscale_tensor(
    net: LoadedModel,
    lr: torch.Tensor,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_OVERLAP,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Super-resolve `lr` (N, C, H, W, values in [0, 1]) to (N, C, sH, sW) float32 on the model's device.

    `tile`: LR tile side (rounded down to the network's multiple_of, so tiles need no padding; the
    image edge tiles are shifted inwards); None picks AUTO_TILE for large inputs,
    0 disables tiling. `tile_overlap`: LR pixels shared by neighbouring tiles (at most half a tile); the
    outer quarter of each overlap is discarded, so it should exceed 4x the network's effective reach
    (PAN: ~16 LR px). The output is not clamped.
    """
    device = next(net.model.parameters(), torch.empty(0)).device  # ONNX Runtime modules hold none
    if device.type == "cpu":
        keep_freed_memory()
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" and net.supports_bf16 else torch.float32)
    n, c, h, w = lr.shape
    s, m = net.scale, net.multiple_of
    x = lr.to(device, torch.float32)
    if net.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if tile is None:
        tile = AUTO_TILE if h * w > AUTO_TILE * AUTO_TILE else 0
    tile = max(tile // m * m, m) if tile else 0
    with torch.inference_mode(), _autocast(device, dtype):
        if not tile or (tile >= h and tile >= w):
            out = net.model(x).float()
            if progress:
                progress(1, 1)
        else:
            out = _tiled(net.model, x, s, min(tile, h), min(tile, w), tile_overlap, progress)
    return out


def _tiled(
    model: torch.nn.Module,
    x: torch.Tensor,
    s: int,
    tile_h: int,
    tile_w: int,
    overlap: int,
    progress: Progress | None,
) -> torch.Tensor:
    n, c, h, w = x.shape
    overlap = min(overlap, min(tile_h, tile_w) // 2)
    ys, xs = tile_starts(h, tile_h, overlap), tile_starts(w, tile_w, overlap)
    out = torch.zeros(n, c, h * s, w * s, device=x.device)
    total_weight = torch.zeros(1, 1, h * s, w * s, device=x.device)
    done, count = 0, len(ys) * len(xs)
    for i, y0 in enumerate(ys):
        ov_top = (ys[i - 1] + tile_h - y0) * s if i else 0
        ov_bottom = (y0 + tile_h - ys[i + 1]) * s if i + 1 < len(ys) else 0
        wy = _ramp(tile_h * s, ov_top, ov_bottom)
        for j, x0 in enumerate(xs):
            ov_left = (xs[j - 1] + tile_w - x0) * s if j else 0
            ov_right = (x0 + tile_w - xs[j + 1]) * s if j + 1 < len(xs) else 0
            weight = (wy[:, None] * _ramp(tile_w * s, ov_left, ov_right)[None, :]).to(x.device)
            piece = model(x[..., y0 : y0 + tile_h, x0 : x0 + tile_w]).float()
            region = (..., slice(y0 * s, (y0 + tile_h) * s), slice(x0 * s, (x0 + tile_w) * s))
            out[region] += piece * weight
            total_weight[region] += weight
            done += 1
            if progress:
                progress(done, count)
    return out / total_weight


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H x W x C float array → 1 x C x H x W tensor."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """1 x C x H x W tensor → H x W x C float32 array clamped to [0, 1]."""
    return t[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy().astype(np.float32)


class ChannelMismatch(ValueError):
    """A colour image given to a grayscale model (the message says how to go on)."""


def run_pixels(
    net: LoadedModel,
    pixels: np.ndarray,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_OVERLAP,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """One H x W x C image (C = 1 gray, 3 RGB; floats, [0, 1] or noisy beyond) through the network: the
    H·s x W·s x C result, clamped to [0, 1].

    Gray images through a colour model are replicated to RGB and the output's channels averaged back to
    gray; a colour image through a gray model is a ChannelMismatch, never a silent conversion.
    """
    channels = pixels.shape[2]
    if channels == 3 and net.in_channels == 1:
        raise ChannelMismatch("a colour image given to a grayscale model (convert the image to gray first)")
    widen = channels == 1 and net.in_channels == 3
    out = tensor_to_image(
        upscale_tensor(
            net,
            image_to_tensor(np.repeat(pixels, 3, axis=2) if widen else pixels),
            tile=tile,
            tile_overlap=tile_overlap,
            dtype=dtype,
            progress=progress,
        )
    )
    return out.mean(axis=2, keepdims=True) if widen else out


def upscale_image(
    net: LoadedModel,
    image,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_OVERLAP,
    dtype: torch.dtype | None = None,
    progress: Progress | None = None,
):
    """Run an `sr.imageio.Image` through a model (super-resolution, or restoration at scale 1): grayscale
    stays grayscale; alpha is upscaled separately by a super-resolution model and kept as it is by a
    restoration model (there is nothing to denoise in it)."""
    from sr.imageio import Image

    def run(pixels: np.ndarray) -> np.ndarray:
        return run_pixels(net, pixels, tile=tile, tile_overlap=tile_overlap, dtype=dtype, progress=progress)

    pixels = run(image.pixels)
    alpha = None
    if image.alpha is not None:
        if net.scale == 1:
            alpha = image.alpha
        elif image.alpha.min() == image.alpha.max():
            alpha = np.full(pixels.shape[:2], image.alpha.flat[0], dtype=np.float32)
        else:
            alpha = run(image.alpha[..., None])[..., 0]
    return Image(pixels=pixels, alpha=alpha, bit_depth=image.bit_depth)


def check_outscale(outscale: int, scale: int) -> None:
    """A ValueError unless `outscale` is a final scale `rescale` can give from a x`scale` model's output."""
    if not 1 <= outscale <= scale:
        raise ValueError(f"this model upscales x{scale}, so 1 to {scale} are possible")


def rescale(image, outscale: int, scale: int):
    """An upscaled `sr.imageio.Image` brought from the model's `scale` down to `outscale` by area averaging.

    This is how a x4 model gives a x2 or x3 result; `outscale` equal to `scale` returns `image` unchanged.
    Callers check `outscale` with `check_outscale` before running the model.
    """
    import cv2

    from sr.imageio import Image

    check_outscale(outscale, scale)
    if outscale == scale:
        return image
    h, w = image.pixels.shape[:2]
    size = (round(w * outscale / scale), round(h * outscale / scale))

    def resize(x: np.ndarray) -> np.ndarray:
        out = cv2.resize(x, size, interpolation=cv2.INTER_AREA)
        return out.reshape(size[1], size[0], *x.shape[2:])

    alpha = None if image.alpha is None else resize(image.alpha)
    return Image(pixels=resize(image.pixels), alpha=alpha, bit_depth=image.bit_depth)
