"""Window partition/reverse and cyclic shifting of (B, H, W, C) maps, as tensor ops that export to ONNX.

Window order is row-major over the image and image-major over the batch: image b's window i is row b·nW + i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.tracing import is_exporting


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """(value, value) for an int, the pair itself otherwise."""
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def window_partition(x: Tensor, window_size: int | tuple[int, int]) -> Tensor:
    """(B, H, W, C) → (B·nW, wh, ww, C); H and W must be multiples of the window (wh, ww)."""
    wh, ww = pair(window_size)
    b, h, w, c = x.shape
    if not is_exporting() and (h % wh or w % ww):
        raise ValueError(f"feature map {h}×{w} is not a multiple of the window {wh}×{ww}; pad it first")
    x = x.view(b, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, wh, ww, c)


def window_reverse(windows: Tensor, window_size: int | tuple[int, int], h: int, w: int) -> Tensor:
    """(B·nW, wh, ww, C) or (B·nW, wh·ww, C) → (B, H, W, C); the inverse of `window_partition`."""
    wh, ww = pair(window_size)
    c = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def cyclic_shift(x: Tensor, shifts: int | tuple[int, int], dims: tuple[int, int] = (1, 2)) -> Tensor:
    """`torch.roll(x, shifts, dims)` written as slices and a concatenation or, while exporting, as one gather
    per dim with indices wrapped at the runtime size.

    Slices with constant bounds and the gathers export to ONNX whatever the runtime size (a roll needs the
    size to wrap), so this is the shift to use in exported networks. Eager mode takes the slices, the faster
    there; exported graphs take the gathers, since ONNX Runtime copies the output of every Slice and Concat:
    a gather copies the map once per dim instead of twice (the shifts of SwinIR-light at 128×128 took about
    8 ms of ONNX Runtime kernel time instead of 24). Requires |shift| < size along each dim.
    """
    if is_exporting():
        for shift, dim in zip(pair(shifts), dims, strict=True):
            if shift:
                size = x.shape[dim]
                x = x.index_select(dim, torch.remainder(torch.arange(size, device=x.device) - shift, size))
        return x
    for shift, dim in zip(pair(shifts), dims, strict=True):
        if shift:
            head = [slice(None)] * x.dim()
            tail = [slice(None)] * x.dim()
            head[dim] = slice(-shift, None)
            tail[dim] = slice(None, -shift)
            x = torch.cat([x[tuple(head)], x[tuple(tail)]], dim=dim)
    return x
