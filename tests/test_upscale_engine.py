"""The inference engine: tiling equals the untiled run, padding to a multiple, grayscale and alpha."""

import numpy as np
import pytest
import torch
from torch import nn

from sr.imageio import Image
from sr.loading import LoadedModel
from sr.upscale import tile_starts, upscale_image, upscale_tensor


@pytest.fixture(scope="module")
def pan_untiled(pan_x4, real_lr):
    return upscale_tensor(pan_x4, real_lr, tile=0)


@pytest.mark.parametrize("tile", [128, 150, 177])
def test_tiled_equals_untiled(pan_x4, real_lr, pan_untiled, tile):
    calls = []
    tiled = upscale_tensor(
        pan_x4, real_lr, tile=tile, progress=lambda done, total: calls.append((done, total))
    )
    assert len(calls) > 1 and calls[-1][0] == calls[-1][1]
    assert tiled.shape == pan_untiled.shape == (1, 3, 720, 920)
    assert (tiled - pan_untiled).abs().max().item() <= 1e-4


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(10, 4, 2), (230, 128, 64), (100, 100, 10), (7, 9, 3)]
)
def test_tiles_cover_everything_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start : start + tile] = True
        assert start + min(tile, length) <= length
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


class _WindowNet(nn.Module):
    """Nearest x2 upsampling that fails on inputs whose sides are not multiples of 8, like a window net
    without internal padding: tiles must come in multiples of 8."""

    def __init__(self):
        super().__init__()
        self.p = nn.Linear(1, 1)  # a parameter, for the engine to find the device

    def forward(self, x):
        assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0, x.shape
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def test_tiles_are_rounded_to_the_network_multiple():
    net = LoadedModel(_WindowNet(), "test", 2, {}, 8, False, False, "-")
    x = torch.rand(1, 3, 40, 56)
    out = upscale_tensor(net, x, tile=0)
    assert torch.equal(out, nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    tiled = upscale_tensor(net, x, tile=21, tile_overlap=8)  # rounded down to 16
    assert torch.allclose(tiled, out, atol=1e-6)


def test_grayscale_stays_grayscale_and_alpha_is_upscaled(pan_x4, real_lr):
    gray = real_lr[0, 1:2, :40, :48].permute(1, 2, 0).numpy()
    alpha = np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48)
    result = upscale_image(pan_x4, Image(pixels=gray, alpha=alpha, bit_depth=16))
    assert result.pixels.shape == (160, 192, 1)
    assert result.alpha.shape == (160, 192)
    assert result.bit_depth == 16
    assert 0 <= result.alpha.min() and result.alpha.max() <= 1
    # Upscaled alpha follows the input ramp: compare block means with the source.
    blocks = result.alpha.reshape(40, 4, 48, 4).mean(axis=(1, 3))
    assert np.abs(blocks - alpha).max() < 0.05
    rgb_out = upscale_image(pan_x4, Image(pixels=np.repeat(gray, 3, axis=2)))
    assert np.abs(rgb_out.pixels.mean(axis=2, keepdims=True) - result.pixels).max() < 1e-6


def test_opaque_alpha_is_not_run_through_the_network(pan_x4):
    class Counting(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0

        def forward(self, x):
            self.calls += 1
            return self.inner(x)

    counting = Counting(pan_x4.model)
    net = LoadedModel(counting, "PAN", 4, {}, 1, False, True, "-")
    pixels = np.full((12, 10, 3), 0.5, np.float32)
    result = upscale_image(net, Image(pixels=pixels, alpha=np.ones((12, 10), np.float32)))
    assert counting.calls == 1
    assert (result.alpha == 1).all()


@pytest.mark.parametrize(
    ("weights", "scale"),
    [
        ("weights/PAN/PANx4_DF2K.pth", None),
        ("weights/A2N/aan_x2.pt", 2),
        ("weights/CAMixerSR/CAMixerSR_S.pth", None),
        ("weights/CFSR/CFSR_x4.pth", 4),
        ("denoise", None),
    ],
)
def test_channels_last_families_give_the_contiguous_output(shared_dir, real_lr, weights, scale):
    """Convolution-bound families run with NHWC weights and inputs (faster on CPU); the output is the one the
    same network gives in the default layout, within 1e-5."""
    import copy

    import sr

    net = sr.load_model(shared_dir / weights if weights.startswith("weights/") else weights, scale=scale)
    assert net.channels_last
    assert all(
        p.is_contiguous(memory_format=torch.channels_last) for p in net.model.parameters() if p.dim() == 4
    )
    plain = copy.deepcopy(net.model)
    for tensor in plain.parameters():
        tensor.data = tensor.data.contiguous()
    x = real_lr[..., :48, :56]
    with torch.inference_mode():
        want = plain(x)
    assert (upscale_tensor(net, x, tile=0) - want).abs().max().item() <= 1e-5
