"""Reference backend: window attention exactly as the official SwinIR/HAT/SRFormer/DAT code computes it.

The specification every other backend is tested against; it also runs during ONNX export and tracing.
"""

from __future__ import annotations

import torch
from torch import Tensor


def attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None, scale: float
) -> Tensor:
    """softmax(scale·q·kᵀ + bias + mask)·v with the mask repeating over the batch (window i of image b is
    row b·nW + i)."""
    attn = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias.unsqueeze(0)
    if mask is not None:
        windows, heads, n_q, n_k = mask.shape[0], attn.shape[1], attn.shape[2], attn.shape[3]
        attn = attn.view(-1, windows, heads, n_q, n_k) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, heads, n_q, n_k)
    return torch.softmax(attn, dim=-1) @ v
