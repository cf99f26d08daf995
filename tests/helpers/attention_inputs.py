"""The window-attention shapes of REFERENCE.md §4 and their test inputs, shared by the kernel tests:
per-window shapes (Nq, Nk, d, scale) are the real ones; window and head counts are small (grid dimensions)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import region_mask


@dataclass(frozen=True)
class Family:
    name: str
    n_q: int
    n_k: int
    head_dim: int
    masked: bool = True
    biased: bool = True
    scale: float | None = None


FAMILIES = [
    Family("swinir-classic", 64, 64, 30),
    Family("swinir-light", 64, 64, 10),
    Family("hat-sa=dat-spatial", 256, 256, 30),
    Family("hat-s-sa", 256, 256, 24),
    Family("hat-ocab", 256, 576, 30, masked=False),
    Family("srformer-psa", 484, 121, 30),
    Family("srformer-light-psa", 256, 64, 10),
    Family("dat-s-spatial", 128, 128, 30),
    Family("dat-light-spatial", 256, 256, 10),
    Family("camixer", 256, 256, 60, masked=False, biased=False, scale=1.0),
]
IMAGES, WINDOWS = 2, 2


def make_inputs(family: Family, dtype: torch.dtype, device: str, *, bias: bool, mask: bool, seed: int = 0):
    """q, k, v as strided views of packed projections (as networks produce them), bias, and a 0/−100 mask
    of random regions in which every query keeps at least one key."""
    gen = torch.Generator().manual_seed(seed)
    windows, heads = (IMAGES * WINDOWS, 1) if mask else (IMAGES, 2)
    dim = family.head_dim
    spread = 1.0 if family.scale is None else dim**-0.25  # keep logits O(1) when scale is 1
    q = (torch.randn(windows, family.n_q, 1, heads, dim, generator=gen) * spread).permute(2, 0, 3, 1, 4)[0]
    kv = torch.randn(windows, family.n_k, 2, heads, dim, generator=gen).permute(2, 0, 3, 1, 4)
    k, v = kv[0] * spread, kv[1]
    bias_t = torch.randn(heads, family.n_q, family.n_k, generator=gen) if bias else None
    mask_t = None
    if mask:
        query_ids = torch.randint(0, 4, (WINDOWS, family.n_q), generator=gen)
        key_ids = torch.randint(0, 4, (WINDOWS, family.n_k), generator=gen)
        key_ids[:, :4] = torch.arange(4)
        mask_t = region_mask(query_ids, key_ids, dtype=torch.float32)
    return [None if t is None else t.to(device=device, dtype=dtype) for t in (q, k, v, bias_t, mask_t)]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected = expected.double()
    return ((actual.double() - expected).norm() / expected.norm()).item()
