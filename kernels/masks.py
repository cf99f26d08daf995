"""Shifted-window attention masks (0 / −100 additive, as the official Swin code builds them) from tensor ops.

The masks are built on the target device from `arange` comparisons, so they trace and export with dynamic H/W,
and are cached per (H, W, window, shift, device, dtype) outside of tracing. Cached masks are shared: never
modify one in place.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from kernels.tracing import is_graph_capture
from kernels.windows import pair, window_partition

MASK_FILL = -100.0


def shift_region_ids(
    h: int,
    w: int,
    window_size: int | tuple[int, int],
    shift_size: int | tuple[int, int],
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """(nW, wh·ww) region label of every token of every window of a cyclically rolled h×w map.

    Along each axis of length n, positions [0, n−window) are region 0, [n−window, n−shift) region 1 and
    [n−shift, n) region 2 (the slices of Swin's `calculate_mask`); a token's label is 3·row_region +
    col_region. Needs 0 < shift ≤ window.
    """
    (wh, ww), (sh, sw) = pair(window_size), pair(shift_size)
    if not (0 < sh <= wh and 0 < sw <= ww):
        raise ValueError(f"shift {(sh, sw)} must be positive and at most the window {(wh, ww)}")
    rows = _axis_regions(h, wh, sh, device)
    cols = _axis_regions(w, ww, sw, device)
    ids = rows[:, None] * 3 + cols[None, :]
    return window_partition(ids[None, :, :, None], (wh, ww)).reshape(-1, wh * ww)


def region_mask(query_ids: Tensor, key_ids: Tensor, *, dtype: torch.dtype, fill: float = MASK_FILL) -> Tensor:
    """(nW, Nq, Nk) additive mask: 0 where query and key share a region label, `fill` elsewhere."""
    return (query_ids[:, :, None] != key_ids[:, None, :]).to(dtype) * fill


def shift_window_mask(
    h: int,
    w: int,
    window_size: int | tuple[int, int],
    shift_size: int | tuple[int, int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(nW, N, N) mask of a shifted-window block on an h×w map (Swin/SwinIR/HAT `calculate_mask`, DAT's
    rectangular windows with a (wh, ww) window and (sh, sw) shift)."""
    key = (pair(window_size), pair(shift_size))
    if is_graph_capture():
        return _build_shift_mask(h, w, *key, device, dtype)
    return _cached_shift_mask(int(h), int(w), *key, torch.device(device or "cpu"), dtype)


def permuted_shift_window_mask(
    h: int,
    w: int,
    window_size: int,
    shift_size: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(nW, ws², (ws/2)²) mask for permuted self-attention (SRFormer PSA): queries from ws×ws windows of the
    h×w map labelled by Swin's regions, keys from (ws/2)×(ws/2) windows of the 2× coarser map labelled by
    the same regions with shift ⌈shift/2⌉ on both axes, as SRFormer's `calculate_mask` since its fix
    bc85758 (`-self.shift_size // 2`; the first release used other boundaries)."""
    key = (int(window_size), int(shift_size))
    if is_graph_capture():
        return _build_permuted_mask(h, w, *key, device, dtype)
    return _cached_permuted_mask(int(h), int(w), *key, torch.device(device or "cpu"), dtype)


def _axis_regions(n: int, window: int, shift: int, device: torch.device | str | None) -> Tensor:
    position = torch.arange(n, device=device)
    return (position >= n - window).long() + (position >= n - shift).long()


def _build_shift_mask(h, w, window, shift, device, dtype) -> Tensor:
    ids = shift_region_ids(h, w, window, shift, device=device)
    return region_mask(ids, ids, dtype=dtype)


def _build_permuted_mask(h, w, window, shift, device, dtype) -> Tensor:
    half = window // 2
    query_ids = shift_region_ids(h, w, window, shift, device=device)
    key_ids = shift_region_ids(h // 2, w // 2, half, (shift + 1) // 2, device=device)
    return region_mask(query_ids, key_ids, dtype=dtype)


_cached_shift_mask = lru_cache(maxsize=64)(_build_shift_mask)
_cached_permuted_mask = lru_cache(maxsize=64)(_build_permuted_mask)
