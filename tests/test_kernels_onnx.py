"""A tiny shifted-window block built from the kernels helpers exports to ONNX with dynamic H and W."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kernels import (
    cyclic_shift,
    relative_position_bias,
    relative_position_index,
    shift_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)

ort = pytest.importorskip("onnxruntime")


class ShiftedWindowBlock(nn.Module):
    """Roll-free shift, partition, qkv, window attention with bias and shift mask, reverse, shift back."""

    def __init__(self, dim: int = 12, heads: int = 2, window: int = 4, shift: int = 2) -> None:
        super().__init__()
        self.heads, self.window, self.shift = heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads))
        self.register_buffer("index", relative_position_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, c, h, w = x.shape
        tokens = self.window * self.window
        x = cyclic_shift(x.permute(0, 2, 3, 1), (-self.shift, -self.shift))
        windows = window_partition(x, self.window).reshape(-1, tokens, c)
        qkv = self.qkv(windows).reshape(-1, tokens, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        mask = shift_window_mask(h, w, self.window, self.shift, device=x.device, dtype=x.dtype)
        bias = relative_position_bias(self.table, self.index)
        out = window_attention(qkv[0], qkv[1], qkv[2], bias=bias, mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(-1, tokens, c))
        x = cyclic_shift(window_reverse(out, self.window, h, w), (self.shift, self.shift))
        return x.permute(0, 3, 1, 2)


def test_shifted_window_block_exports_with_dynamic_height_and_width(tmp_path):
    torch.manual_seed(0)
    block = ShiftedWindowBlock().eval()
    path = tmp_path / "block.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(
        block,
        (torch.randn(1, 12, 16, 16),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": axes, "y": axes},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(2, 12, 24, 32), (1, 12, 8, 40)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = block(x).numpy()
        (actual,) = session.run(None, {"x": x.numpy()})
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
