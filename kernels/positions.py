"""Relative-position indices (Swin square/rectangular, SRFormer aligned, HAT overlapping) and the bias gather.

Indices are built with tensor ops and equal the official buffers element for element (HAT's overlapping index
keeps its negative entries, which wrap around the table as in the official code).
"""

from __future__ import annotations

import torch
from torch import Tensor

from kernels.windows import pair


def relative_position_index(window_size: int | tuple[int, int]) -> Tensor:
    """(N, N) index into a ((2wh−1)(2ww−1), heads) table for an N = wh·ww window (Swin, SwinIR, HAT SA,
    DAT)."""
    wh, ww = pair(window_size)
    coords = _grid(wh, ww)
    relative = coords[:, :, None] - coords[:, None, :]
    return (relative[0] + wh - 1) * (2 * ww - 1) + relative[1] + ww - 1


def aligned_relative_position_index(window_size: int) -> Tensor:
    """(ws², (ws/2)²) index for permuted self-attention (SRFormer `aligned_relative_position_index`): query
    (y, x) of the ws×ws window takes the Swin index row of (y//2, x//2) in the (ws/2)×(ws/2) key window."""
    half = window_size // 2
    query = torch.div(_grid(window_size, window_size), 2, rounding_mode="floor")
    keys = _grid(half, half)
    relative = query[:, :, None] - keys[:, None, :]
    return (relative[0] + half - 1) * (2 * half - 1) + relative[1] + half - 1


def overlapping_relative_position_index(window_size: int, overlap_window_size: int) -> Tensor:
    """(ws², ows²) index into a ((ws+ows−1)², heads) table for queries in a ws×ws window and keys in the
    overlapping ows×ows window around it (HAT OCAB `calculate_rpi_oca`, negative entries included)."""
    queries = _grid(window_size, window_size)
    keys = _grid(overlap_window_size, overlap_window_size)
    relative = keys[:, None, :] - queries[:, :, None] + window_size - overlap_window_size + 1
    return relative[0] * (window_size + overlap_window_size - 1) + relative[1]


def relative_position_coordinates(window_size: int | tuple[int, int]) -> Tensor:
    """((2wh−1)(2ww−1), 2) float (dy, dx) of each table row of `relative_position_index` (DAT's `rpe_biases`,
    the input of its position-bias MLP)."""
    wh, ww = pair(window_size)
    dy = torch.arange(1 - wh, wh)
    dx = torch.arange(1 - ww, ww)
    return torch.stack(torch.meshgrid(dy, dx, indexing="ij")).flatten(1).t().float()


def relative_position_bias(table: Tensor, index: Tensor) -> Tensor:
    """(heads, Nq, Nk) bias gathered from a (rows, heads) table by an (Nq, Nk) index; differentiable in the
    table."""
    n_q, n_k = index.shape
    return table[index.reshape(-1)].view(n_q, n_k, -1).permute(2, 0, 1).contiguous()


def _grid(h: int, w: int) -> Tensor:
    return torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
