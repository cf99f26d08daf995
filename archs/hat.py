"""HAT, hybrid attention transformer (Chen et al., CVPR 2023), keyed as the official weights.

Official code: XPixelGroup/HAT `hat/archs/hat_arch.py` (network) and `hat/models/hat_model.py` (test-time
reflect padding to a window multiple, done here inside `forward`). Input and output are RGB in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import (
    DIV2K_RGB_MEAN,
    Mlp,
    PooledChannelAttention,
    Upsampler,
    upsampler_scale,
    windowed_pixelshuffle_forward,
)
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels import (
    cyclic_shift,
    overlapping_relative_position_index,
    relative_position_bias,
    relative_position_index,
    shift_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)


def _heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(windows, tokens, heads·d) → (windows, heads, tokens, d)."""
    windows, tokens, channels = x.shape
    return x.view(windows, tokens, heads, channels // heads).transpose(1, 2)


def _heads_last(x: torch.Tensor) -> torch.Tensor:
    """(windows, heads, tokens, d) → (windows, tokens, heads·d)."""
    windows, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(windows, tokens, heads * head_dim)


class CAB(nn.Module):
    """Channel attention block: 3x3 conv to C/compress, GELU, 3x3 conv back to C, channel attention."""

    def __init__(self, num_feat: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        hidden = num_feat // compress_ratio
        self.cab = nn.Sequential(nn.Conv2d(num_feat, hidden, 3, 1, 1), nn.GELU(),
                                 nn.Conv2d(hidden, num_feat, 3, 1, 1),
                                 PooledChannelAttention(num_feat, squeeze_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cab(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws×ws windows with a relative-position bias (W-MSA / SW-MSA)."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rpi: torch.Tensor, mask_size: tuple[int, int] | None) -> torch.Tensor:
        """x: (B·nW, ws², C) windows; mask_size: the (H, W) of the cyclically shifted map, None unshifted."""
        q, k, v = (_heads_first(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        bias = relative_position_bias(self.relative_position_bias_table, rpi).to(q.dtype)
        mask = None
        if mask_size is not None:
            mask = shift_window_mask(*mask_size, self.window_size, self.window_size // 2,
                                     device=q.device, dtype=q.dtype)
        return self.proj(_heads_last(window_attention(q, k, v, bias=bias, mask=mask)))


class HAB(nn.Module):
    """Hybrid attention block: (shifted) window attention plus a parallel CAB scaled by `conv_scale`, then an
    MLP; both with pre-LayerNorm and residuals."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, compress_ratio: int,
                 squeeze_factor: int, conv_scale: float, mlp_ratio: float, qkv_bias: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2 if shifted else 0
        self.conv_scale = conv_scale
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.conv_block = CAB(dim, compress_ratio, squeeze_factor)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) with H and W multiples of the window."""
        _, h, w, c = x.shape
        ws, shift = self.window_size, self.shift_size
        y = self.norm1(x)
        conv_x = self.conv_block(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        if shift:
            y = cyclic_shift(y, (-shift, -shift))
        windows = window_partition(y, ws).reshape(-1, ws * ws, c)
        y = window_reverse(self.attn(windows, rpi_sa, (h, w) if shift else None), ws, h, w)
        if shift:
            y = cyclic_shift(y, (shift, shift))
        x = x + y + conv_x * self.conv_scale
        return x + self.mlp(self.norm2(x))


class OCAB(nn.Module):
    """Overlapping cross-attention block: queries from ws×ws windows, keys and values from the overlapping
    ows×ows windows around them (zero-padded at the border, unmasked, as `nn.Unfold` gives), then an MLP."""

    def __init__(self, dim: int, window_size: int, overlap_ratio: float, num_heads: int, qkv_bias: bool,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.window_size = window_size
        self.overlap_win_size = int(window_size * overlap_ratio) + window_size
        if (self.overlap_win_size - window_size) % 2:
            raise ValueError(f"the overlap window {self.overlap_win_size} must exceed the window "
                             f"{window_size} by an even number of pixels (the official unfold needs it)")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((window_size + self.overlap_win_size - 1) ** 2, num_heads))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) with H and W multiples of the window."""
        b, h, w, c = x.shape
        ws, ows, heads = self.window_size, self.overlap_win_size, self.num_heads
        qkv = self.qkv(self.norm1(x))
        q = _heads_first(window_partition(qkv[..., :c], ws).reshape(-1, ws * ws, c), heads)
        kv = F.unfold(qkv[..., c:].permute(0, 3, 1, 2), ows, stride=ws, padding=(ows - ws) // 2)
        # (B, 2·heads·d·ows², nW), channel-major like the map → (2, B·nW, heads, ows², d)
        kv = kv.view(b, 2, heads, c // heads, ows * ows, -1).permute(1, 0, 5, 2, 4, 3)
        k, v = kv.reshape(2, -1, heads, ows * ows, c // heads)
        bias = relative_position_bias(self.relative_position_bias_table, rpi_oca).to(q.dtype)
        y = _heads_last(window_attention(q, k, v, bias=bias))
        x = self.proj(window_reverse(y, ws, h, w)) + x
        return x + self.mlp(self.norm2(x))


class AttenBlocks(nn.Module):
    """The HABs of one group (shifted windows in odd blocks) and the group's OCAB."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, compress_ratio: int,
                 squeeze_factor: int, conv_scale: float, overlap_ratio: float, mlp_ratio: float,
                 qkv_bias: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            HAB(dim, num_heads, window_size, i % 2 == 1, compress_ratio, squeeze_factor, conv_scale,
                mlp_ratio, qkv_bias) for i in range(depth))
        self.overlap_attn = OCAB(dim, window_size, overlap_ratio, num_heads, qkv_bias, mlp_ratio)

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, rpi_sa)
        return self.overlap_attn(x, rpi_oca)


class RHAG(nn.Module):
    """Residual hybrid attention group: attention blocks, a 3x3 conv ('1conv') or nothing, plus the input."""

    def __init__(self, dim: int, resi_connection: str, **blocks) -> None:
        super().__init__()
        self.residual_group = AttenBlocks(dim, **blocks)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1) if resi_connection == "1conv" else nn.Identity()

    def forward(self, x: torch.Tensor, rpi_sa: torch.Tensor, rpi_oca: torch.Tensor) -> torch.Tensor:
        y = self.residual_group(x, rpi_sa, rpi_oca)
        return self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x


class PatchEmbed(nn.Module):
    """The official patch embedding at patch size 1: the tokens themselves, LayerNorm-ed if `patch_norm`."""

    def __init__(self, dim: int, patch_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if patch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class HAT(nn.Module):
    """HAT with pixel-shuffle reconstruction; the defaults are the released HAT (not the official
    constructor's, whose window 7 with overlap 0.5 cannot run).

    Takes the official constructor's arguments, with `scale` for `upscale`, less the training-only dropout
    and drop-path rates; `img_size` only sizes `absolute_pos_embed` (ape). Features travel as (B, H, W, C)
    maps.
    """

    def __init__(self, *, scale: int = 4, in_chans: int = 3, img_size: int = 64, embed_dim: int = 180,
                 depths: Sequence[int] = (6,) * 6, num_heads: Sequence[int] = (6,) * 6, window_size: int = 16,
                 compress_ratio: int = 3, squeeze_factor: int = 30, conv_scale: float = 0.01,
                 overlap_ratio: float = 0.5, mlp_ratio: float = 2.0, qkv_bias: bool = True, ape: bool = False,
                 patch_norm: bool = True, img_range: float = 1.0, upsampler: str = "pixelshuffle",
                 resi_connection: str = "1conv", num_feat: int = 64) -> None:
        super().__init__()
        if upsampler != "pixelshuffle":
            raise ValueError(f"HAT reconstructs with upsampler 'pixelshuffle' only, not {upsampler!r}")
        if resi_connection not in ("1conv", "identity"):
            raise ValueError(f"resi_connection must be '1conv' or 'identity', not {resi_connection!r}")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        self.scale = scale
        self.window_size = window_size
        self.img_range = img_range
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        overlap = int(window_size * overlap_ratio) + window_size
        self.register_buffer("relative_position_index_SA", relative_position_index(window_size))
        self.register_buffer("relative_position_index_OCA",
                             overlapping_relative_position_index(window_size, overlap))

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.absolute_pos_embed = nn.Parameter(torch.zeros(1, img_size**2, embed_dim)) if ape else None
        self.layers = nn.ModuleList(
            RHAG(embed_dim, resi_connection, depth=depth, num_heads=heads, window_size=window_size,
                 compress_ratio=compress_ratio, squeeze_factor=squeeze_factor, conv_scale=conv_scale,
                 overlap_ratio=overlap_ratio, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
            for depth, heads in zip(depths, num_heads, strict=True))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = (nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == "1conv"
                                else nn.Identity())
        self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                  nn.LeakyReLU(inplace=True))
        self.upsample = Upsampler(scale, num_feat)
        self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W) through the RHAGs; H and W multiples of the window."""
        x = self.patch_embed(x.permute(0, 2, 3, 1))
        if self.absolute_pos_embed is not None:
            x = x + self.absolute_pos_embed.view(1, *x.shape[1:])
        for layer in self.layers:
            x = layer(x, self.relative_position_index_SA, self.relative_position_index_OCA)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return windowed_pixelshuffle_forward(self, x)


_PREFIX = "layers.0.residual_group."
_KEYS = ("conv_first.weight", f"{_PREFIX}blocks.0.norm1.weight", f"{_PREFIX}blocks.0.attn.qkv.weight",
         f"{_PREFIX}blocks.0.attn.relative_position_bias_table", f"{_PREFIX}blocks.0.conv_block.cab.0.weight",
         f"{_PREFIX}blocks.0.conv_block.cab.3.attention.1.weight", f"{_PREFIX}blocks.0.mlp.fc1.weight",
         f"{_PREFIX}overlap_attn.qkv.weight", f"{_PREFIX}overlap_attn.relative_position_bias_table",
         "conv_before_upsample.0.weight", "conv_last.weight")


def detect(state_dict: StateDict) -> bool:
    """HAT's blocks carry a CAB (`conv_block.cab`) and every group an OCAB (`overlap_attn`): keys no SwinIR,
    SRFormer or DAT checkpoint has."""
    return all(key in state_dict for key in _KEYS)


def _ratio(numerator: int, denominator: int) -> float:
    """The smallest float r ≥ numerator/denominator with int(denominator·r) == numerator, which is how the
    official code turns a ratio back into a size (a plain quotient can land one ulp short of it)."""
    ratio = numerator / denominator
    while int(denominator * ratio) < numerator:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def _divisor(channels: int, reduced: int, name: str, key: str) -> int:
    """The integer r with channels // r == reduced (any of several equal choices builds the same net)."""
    found = channels // reduced if reduced > 0 else 0
    if found < 1 or channels // found != reduced:
        raise MissingHyperParameter(f"cannot tell {name}: {key} reduces {channels} channels to {reduced}, "
                                    "which no integer ratio gives")
    return found


def _square_side(count: int, key: str, what: str) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise MissingHyperParameter(f"cannot tell the {what}: {key} has {count} rows, not a square")
    return side


def _windows(state_dict: StateDict) -> tuple[int, int]:
    """(ws, ows) from the bias tables, (2ws−1)² and (ws+ows−1)² rows, checked against the index buffers."""
    key = f"{_PREFIX}blocks.0.attn.relative_position_bias_table"
    side = _square_side(shape(state_dict, key)[0], key, "window size")
    if side % 2 == 0:
        raise MissingHyperParameter(f"cannot tell the window size: {key} has {side}² rows, not (2ws−1)²")
    window_size = (side + 1) // 2
    key = f"{_PREFIX}overlap_attn.relative_position_bias_table"
    overlap = _square_side(shape(state_dict, key)[0], key, "overlap window") - window_size + 1
    for key, expected in (("relative_position_index_SA", (window_size**2, window_size**2)),
                          ("relative_position_index_OCA", (window_size**2, overlap**2))):
        if key in state_dict and shape(state_dict, key) != expected:
            raise MissingHyperParameter(f"{key} is {shape(state_dict, key)}, but the bias tables give window "
                                        f"{window_size} and overlap window {overlap}, i.e. {expected}")
    return window_size, overlap


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    """HAT's constructor arguments, read off tensor shapes and keys; `scale` must agree with the upsampler.

    Not stored in the weights: `conv_scale` (0.01) and `img_range` (1.0), the official defaults, used by every
    released checkpoint; the attention scale is head_dim^-0.5 (the official `qk_scale=None`).
    """
    found = upsampler_scale(state_dict, "upsample.")
    if scale not in (None, found):
        raise MissingHyperParameter(f"these HAT weights are x{found}, not x{scale}")
    embed_dim, in_chans = shape(state_dict, "conv_first.weight")[:2]
    groups = [f"layers.{i}.residual_group." for i in range(count_prefixed(state_dict, "layers."))]
    window_size, overlap = _windows(state_dict)
    cab = f"{_PREFIX}blocks.0.conv_block.cab."
    params = {
        "scale": found,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": tuple(count_prefixed(state_dict, f"{group}blocks.") for group in groups),
        "num_heads": tuple(shape(state_dict, f"{group}overlap_attn.relative_position_bias_table")[1]
                           for group in groups),
        "window_size": window_size,
        "compress_ratio": _divisor(embed_dim, shape(state_dict, f"{cab}0.weight")[0], "compress_ratio",
                                   f"{cab}0.weight"),
        "squeeze_factor": _divisor(embed_dim, shape(state_dict, f"{cab}3.attention.1.weight")[0],
                                   "squeeze_factor", f"{cab}3.attention.1.weight"),
        "overlap_ratio": _ratio(overlap - window_size, window_size),
        "mlp_ratio": _ratio(shape(state_dict, f"{_PREFIX}blocks.0.mlp.fc1.weight")[0], embed_dim),
        "qkv_bias": f"{_PREFIX}blocks.0.attn.qkv.bias" in state_dict,
        "ape": "absolute_pos_embed" in state_dict,
        "patch_norm": "patch_embed.norm.weight" in state_dict,
        "resi_connection": "1conv" if "conv_after_body.weight" in state_dict else "identity",
        "num_feat": shape(state_dict, "conv_last.weight")[1],
    }
    if params["ape"]:
        num_patches = shape(state_dict, "absolute_pos_embed")[1]
        params["img_size"] = _square_side(num_patches, "absolute_pos_embed", "img_size")
    return params


_HAT = {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 16, "compress_ratio": 3,
        "squeeze_factor": 30, "overlap_ratio": 0.5, "mlp_ratio": 2.0, "upsampler": "pixelshuffle",
        "resi_connection": "1conv"}

FAMILY = Family(
    name="HAT",
    build=HAT,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=16,
    scales=(2, 3, 4, 8),
    supports_fp16=False,
    supports_bf16=True,
    presets={
        "HAT": _HAT,
        "HAT-S": dict(_HAT, embed_dim=144, compress_ratio=24, squeeze_factor=24),
        "HAT-L": dict(_HAT, depths=(6,) * 12, num_heads=(6,) * 12),
    },
)
