"""The window helpers equal transcriptions of the official code (partition, shift, masks, position indices).

The `official_*` functions below transcribe the loops and index arithmetic of Swin/SwinIR/HAT/SRFormer/DAT
(`window_partition`, `calculate_mask`, `relative_position_index`, `calculate_rpi_oca`,
`aligned_relative_position_index`, `rpe_biases`) as plainly as possible, to serve as brute-force oracles.
"""

from __future__ import annotations

import pytest
import torch

from kernels import (
    aligned_relative_position_index,
    cyclic_shift,
    overlapping_relative_position_index,
    permuted_shift_window_mask,
    relative_position_bias,
    relative_position_coordinates,
    relative_position_index,
    shift_window_mask,
    window_partition,
    window_reverse,
)


def official_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, wh, ww, c)


def official_region_windows(h, w, window, shift, w_window=None, w_shift=None) -> torch.Tensor:
    """img_mask of Swin's calculate_mask, labelled by the slice loops, cut into windows: (nW, wh·ww)."""
    w_window = window if w_window is None else w_window
    w_shift = shift if w_shift is None else w_shift
    img_mask = torch.zeros((1, h, w, 1))
    h_slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    w_slices = (slice(0, -w_window), slice(-w_window, -w_shift), slice(-w_shift, None))
    cnt = 0
    for hs in h_slices:
        for ws in w_slices:
            img_mask[:, hs, ws, :] = cnt
            cnt += 1
    return official_partition(img_mask, window, w_window).view(-1, window * w_window)


def official_swin_mask(h, w, window, shift, w_window=None, w_shift=None) -> torch.Tensor:
    mask_windows = official_region_windows(h, w, window, shift, w_window, w_shift)
    attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


def official_srformer_mask(h, w, window, shift) -> torch.Tensor:
    mask_windows = official_region_windows(h, w, window, shift)
    half = window // 2
    permuted = torch.zeros((1, h // 2, w // 2, 1))
    # SRFormer HEAD (d0c2da6, since fix bc85758): `-self.shift_size // 2` on both axes.
    h_slices = (slice(0, -half), slice(-half, -shift // 2), slice(-shift // 2, None))
    w_slices = h_slices
    cnt = 0
    for hs in h_slices:
        for ws in w_slices:
            permuted[:, hs, ws, :] = cnt
            cnt += 1
    permuted_windows = official_partition(permuted, half, half).view(-1, half * half)
    attn_mask = mask_windows.unsqueeze(2) - permuted_windows.unsqueeze(1)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


def official_relative_position_index(wh: int, ww: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid([torch.arange(wh), torch.arange(ww)], indexing="ij"))
    coords_flatten = torch.flatten(coords, 1)
    relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()
    relative_coords[:, :, 0] += wh - 1
    relative_coords[:, :, 1] += ww - 1
    relative_coords[:, :, 0] *= 2 * ww - 1
    return relative_coords.sum(-1)


def official_oca_index(window: int, overlap_window: int) -> torch.Tensor:
    ori, ext = window, overlap_window
    coords_ori = torch.flatten(torch.stack(torch.meshgrid([torch.arange(ori)] * 2, indexing="ij")), 1)
    coords_ext = torch.flatten(torch.stack(torch.meshgrid([torch.arange(ext)] * 2, indexing="ij")), 1)
    relative_coords = coords_ext[:, None, :] - coords_ori[:, :, None]
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()
    relative_coords[:, :, 0] += ori - ext + 1
    relative_coords[:, :, 1] += ori - ext + 1
    relative_coords[:, :, 0] *= ori + ext - 1
    return relative_coords.sum(-1)


def official_aligned_index(window: int) -> torch.Tensor:
    half = window // 2
    index = official_relative_position_index(half, half)
    index = index.reshape(half, half, 1, 1, half * half).repeat(1, 1, 2, 2, 1)
    return index.permute(0, 2, 1, 3, 4).reshape(4 * half * half, half * half)


@pytest.mark.parametrize(("window", "h", "w"), [(8, 16, 24), ((8, 32), 32, 64), ((32, 8), 64, 16)])
def test_partition_matches_official_and_reverses(window, h, w):
    x = torch.randn(2, h, w, 5)
    wh, ww = (window, window) if isinstance(window, int) else window
    windows = window_partition(x, window)
    assert torch.equal(windows, official_partition(x, wh, ww))
    assert torch.equal(window_reverse(windows, window, h, w), x)
    assert torch.equal(window_reverse(windows.flatten(1, 2), window, h, w), x)


def test_partition_rejects_maps_that_are_not_window_multiples():
    with pytest.raises(ValueError, match="not a multiple of the window"):
        window_partition(torch.randn(1, 10, 16, 3), 8)


@pytest.mark.parametrize("shifts", [(-4, -4), (4, 4), (-3, 5), (0, -2)])
def test_cyclic_shift_equals_roll(shifts):
    x = torch.randn(2, 12, 16, 3)
    assert torch.equal(cyclic_shift(x, shifts), torch.roll(x, shifts, dims=(1, 2)))


@pytest.mark.parametrize("shifts", [(-4, -4), (3, -5)])
def test_traced_cyclic_shift_equals_roll_at_other_sizes(shifts):
    """The gathers taken while tracing wrap at the runtime size, not the traced one."""
    traced = torch.jit.trace(lambda x: cyclic_shift(x, shifts), torch.randn(1, 12, 16, 3))
    for shape in [(2, 12, 16, 3), (1, 9, 24, 5), (1, 32, 7, 2)]:
        x = torch.randn(shape)
        assert torch.equal(traced(x), torch.roll(x, shifts, dims=(1, 2)))


@pytest.mark.parametrize(
    ("h", "w", "window", "shift"),
    [(64, 64, 8, 4), (16, 24, 8, 4), (48, 32, 16, 8), (8, 8, 8, 4), (21, 14, 7, 3)],
)
def test_shift_mask_equals_official_calculate_mask(h, w, window, shift):
    mask = shift_window_mask(h, w, window, shift)
    assert mask.dtype == torch.float32
    assert torch.equal(mask, official_swin_mask(h, w, window, shift))


@pytest.mark.parametrize(("window", "shift"), [((8, 32), (4, 16)), ((32, 8), (16, 4)), ((8, 16), (4, 8))])
def test_rectangular_shift_mask_equals_dat(window, shift):
    h, w = 64, 64
    expected = official_swin_mask(h, w, window[0], shift[0], window[1], shift[1])
    assert torch.equal(shift_window_mask(h, w, window, shift), expected)


@pytest.mark.parametrize(("h", "w", "window"), [(44, 66, 22), (32, 48, 16), (16, 16, 8)])
def test_permuted_mask_equals_srformer(h, w, window):
    mask = permuted_shift_window_mask(h, w, window, window // 2)
    expected = official_srformer_mask(h, w, window, window // 2)
    assert mask.shape == (expected.shape[0], window**2, (window // 2) ** 2)
    assert torch.equal(mask, expected)


def test_masks_are_cached_per_size_device_and_dtype():
    first = shift_window_mask(32, 32, 8, 4, dtype=torch.bfloat16)
    assert first.dtype == torch.bfloat16
    assert shift_window_mask(32, 32, 8, 4, dtype=torch.bfloat16) is first
    assert shift_window_mask(32, 32, 8, 4, dtype=torch.float32) is not first
    assert shift_window_mask(32, 40, 8, 4, dtype=torch.bfloat16).shape == (20, 64, 64)


def test_shift_must_be_positive():
    with pytest.raises(ValueError, match="shift"):
        shift_window_mask(16, 16, 8, 0)


@pytest.mark.parametrize("window", [7, 8, 16, (8, 32), (32, 8), (8, 16)])
def test_relative_position_index_equals_official(window):
    wh, ww = (window, window) if isinstance(window, int) else window
    assert torch.equal(relative_position_index(window), official_relative_position_index(wh, ww))


def test_overlapping_index_equals_hat_oca():
    index = overlapping_relative_position_index(16, 24)
    assert index.shape == (256, 576)
    assert torch.equal(index, official_oca_index(16, 24))
    assert torch.equal(overlapping_relative_position_index(8, 12), official_oca_index(8, 12))


@pytest.mark.parametrize(("window", "shape"), [(22, (484, 121)), (16, (256, 64))])
def test_aligned_index_equals_srformer(window, shape):
    index = aligned_relative_position_index(window)
    assert index.shape == shape
    assert torch.equal(index, official_aligned_index(window))


def test_relative_position_coordinates_equal_dat_rpe_biases():
    h_sp, w_sp = 8, 32
    position_bias_h = torch.arange(1 - h_sp, h_sp)
    position_bias_w = torch.arange(1 - w_sp, w_sp)
    biases = torch.stack(torch.meshgrid([position_bias_h, position_bias_w], indexing="ij"))
    expected = biases.flatten(1).transpose(0, 1).contiguous().float()
    coordinates = relative_position_coordinates((h_sp, w_sp))
    assert torch.equal(coordinates, expected)
    index = relative_position_index((h_sp, w_sp))
    assert index.max().item() == coordinates.shape[0] - 1


def test_relative_position_bias_gathers_like_official_and_is_differentiable():
    table = torch.randn(225, 6, requires_grad=True)
    index = relative_position_index(8)
    bias = relative_position_bias(table, index)
    expected = table[index.view(-1)].view(64, 64, -1).permute(2, 0, 1).contiguous()
    assert torch.equal(bias, expected)
    bias.sum().backward()
    assert table.grad is not None and table.grad.sum().item() == pytest.approx(6 * 64 * 64)
