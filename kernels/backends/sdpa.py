"""SDPA backend: torch's `scaled_dot_product_attention` with bias and shift mask pre-combined into one mask.

The combined additive mask is (nW, h, Nq, Nk) and is never copied per image: there is one SDPA call per image
of the batch (a single call at inference, where the batch is one tile), so each call's mask lines up with its
windows. On CPU this reaches torch's fused flash kernel, which needs 4-D inputs and a 4-D mask (a 3-D mask, or
a 5-D view of q with a broadcast mask, falls back to the unfused math path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float
) -> Tensor:
    """softmax(scale·q·kᵀ + bias + mask)·v through SDPA; same contract as the reference backend."""
    if mask is None:
        additive = None if bias is None else bias.unsqueeze(0)  # a 3-D mask would take the unfused path
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=scale)
    windows = mask.shape[0]
    additive = mask.unsqueeze(1) if bias is None else bias + mask.unsqueeze(1)
    if q.shape[0] == windows:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=scale)
    per_image = [
        F.scaled_dot_product_attention(
            q[start : start + windows],
            k[start : start + windows],
            v[start : start + windows],
            attn_mask=additive,
            scale=scale,
        )
        for start in range(0, q.shape[0], windows)
    ]
    return torch.cat(per_image)
