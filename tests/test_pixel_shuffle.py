"""`archs.blocks.pixel_shuffle`/`pixel_unshuffle` (and their modules) equal torch's ops exactly, for every
layout and factor; exports keep torch's ops (the shuffle is one DepthToSpace node)."""

from __future__ import annotations

import io

import onnx
import pytest
import torch
import torch.nn.functional as F

from archs.blocks import PixelShuffle, PixelUnshuffle, pixel_shuffle, pixel_unshuffle


def layouts(x: torch.Tensor) -> list[torch.Tensor]:
    return [x, x.contiguous(memory_format=torch.channels_last), x[..., 1:-1, 2:], x.transpose(-1, -2)]


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_equal_to_torch_in_every_layout(factor):
    torch.manual_seed(0)
    for x in layouts(torch.randn(2, 3 * factor * factor, 12, 18)):
        assert torch.equal(pixel_shuffle(x, factor), F.pixel_shuffle(x, factor))
        assert torch.equal(PixelShuffle(factor)(x), F.pixel_shuffle(x, factor))
    for x in layouts(torch.randn(2, 5, 12 * factor, 6 * factor)):
        if x.shape[-2] % factor == 0 and x.shape[-1] % factor == 0:
            assert torch.equal(pixel_unshuffle(x, factor), F.pixel_unshuffle(x, factor))
            assert torch.equal(PixelUnshuffle(factor)(x), F.pixel_unshuffle(x, factor))


def test_round_trip_and_keys():
    x = torch.randn(1, 8, 10, 14)
    assert torch.equal(pixel_unshuffle(pixel_shuffle(x, 2), 2), x)
    assert PixelShuffle(2).state_dict() == {} and isinstance(PixelShuffle(2), torch.nn.PixelShuffle)


def test_exports_are_torchs():
    def ops(model: torch.nn.Module) -> list[str]:
        buffer = io.BytesIO()
        torch.onnx.export(model, (torch.randn(1, 8, 6, 6),), buffer, dynamo=False)
        return [node.op_type for node in onnx.load_from_string(buffer.getvalue()).graph.node]

    ours = ops(torch.nn.Sequential(PixelShuffle(2), PixelUnshuffle(2)))
    assert ours == ops(torch.nn.Sequential(torch.nn.PixelShuffle(2), torch.nn.PixelUnshuffle(2)))
    assert ours[0] == "DepthToSpace"
