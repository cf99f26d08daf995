"""DAT, dual aggregation transformer (Chen et al., ICCV 2023), keyed as the official checkpoints.

Official code: zhengchen1999/DAT `basicsr/archs/dat_arch.py` (class DAT). Input and output are RGB in [0, 1];
any input size works: like the official model, spatial attention zero-pads q/k/v to a multiple of the larger
split size inside each block and crops back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archs.blocks import (
    DIV2K_RGB_MEAN,
    UpsampleOneStep,
    Upsampler,
    reflect_pad_to,
    residual_conv,
    upsampler_scale,
)
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels import (
    cyclic_shift,
    relative_position_bias,
    relative_position_coordinates,
    relative_position_index,
    shift_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)

Window = tuple[int, int]


def _image(x: Tensor) -> Tensor:
    """(B, H, W, C) → (B, C, H, W)."""
    return x.permute(0, 3, 1, 2)


def _tokens(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, H, W, C)."""
    return x.permute(0, 2, 3, 1)


class DynamicPosBias(nn.Module):
    """Relative-position bias table from an MLP over the (dy, dx) offsets (CrossFormer style, no residual)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, pos_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, pos_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, pos_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, num_heads))

    def forward(self, offsets: Tensor) -> Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


class SpatialBranch(nn.Module):
    """Window attention of one channel half over wh×ww windows (the official `Spatial_Attention`).

    `rpe_biases` (the MLP's (dy, dx) inputs) and `relative_position_index` are built by kernels' helpers,
    equal the official buffers and keep their names and persistence, so official checkpoints load strictly.
    """

    def __init__(self, dim: int, num_heads: int, window: Window) -> None:
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.pos = DynamicPosBias(dim // 4, num_heads)
        self.register_buffer("rpe_biases", relative_position_coordinates(window))
        self.register_buffer("relative_position_index", relative_position_index(window))

    def forward(self, qkv: Tensor, shift: Window | None) -> Tensor:
        """qkv: (B, H, W, 3, C) with H, W multiples of the window → attention output (B, H, W, C)."""
        b, h, w, _, c = qkv.shape
        wh, ww = self.window
        mask = None
        if shift is not None:
            qkv = cyclic_shift(qkv, (-shift[0], -shift[1]))
            mask = shift_window_mask(h, w, self.window, shift, device=qkv.device, dtype=qkv.dtype)
        windows = window_partition(qkv.reshape(b, h, w, 3 * c), self.window)
        q, k, v = windows.reshape(-1, wh * ww, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = relative_position_bias(self.pos(self.rpe_biases), self.relative_position_index).to(q.dtype)
        out = window_attention(q, k, v, bias=bias, mask=mask, scale=self.scale)
        out = window_reverse(out.transpose(1, 2).reshape(-1, wh, ww, c), self.window, h, w)
        return out if shift is None else cyclic_shift(out, shift)


class AdaptiveAttention(nn.Module):
    """What both attention kinds share: the qkv/proj projections and the adaptive interaction module (AIM),
    a depth-wise conv branch on V whose channel and spatial gates are exchanged with the attention branch.
    The AIM's BatchNorms hold running statistics from training: run in eval mode for inference."""

    def __init__(self, dim: int, qkv_bias: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.dwconv = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, groups=dim), nn.BatchNorm2d(dim), nn.GELU())
        self.channel_interaction = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(dim, dim // 8, 1), nn.BatchNorm2d(dim // 8), nn.GELU(),
            nn.Conv2d(dim // 8, dim, 1),
        )
        self.spatial_interaction = nn.Sequential(
            nn.Conv2d(dim, dim // 16, 1), nn.BatchNorm2d(dim // 16), nn.GELU(), nn.Conv2d(dim // 16, 1, 1),
        )


class SpatialAttention(AdaptiveAttention):
    """Dual spatial window attention (official `Adaptive_Spatial_Attention`): half the channels (and heads)
    attend in s0×s1 windows, the other half in s1×s0 windows, shifted by half a window in shifted blocks;
    the conv branch gates the attention per channel, the attention gates the conv branch per pixel."""

    def __init__(self, dim: int, num_heads: int, split_size: Window, shifted: bool, qkv_bias: bool) -> None:
        super().__init__(dim, qkv_bias)
        s0, s1 = split_size
        self.multiple = max(s0, s1)
        self.shifts = ((s0 // 2, s1 // 2), (s1 // 2, s0 // 2)) if shifted else (None, None)
        self.attns = nn.ModuleList(SpatialBranch(dim // 2, num_heads // 2, w) for w in ((s0, s1), (s1, s0)))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x)
        v = _image(qkv[..., 2 * c :])
        pad_b, pad_r = -h % self.multiple, -w % self.multiple  # zeros after the projection, unmasked
        qkv = F.pad(qkv, (0, 0, 0, pad_r, 0, pad_b)).reshape(b, h + pad_b, w + pad_r, 3, c)
        halves = (qkv[..., : c // 2], qkv[..., c // 2 :])
        branches = zip(self.attns, halves, self.shifts, strict=True)
        attended = torch.cat([branch(half, shift)[:, :h, :w] for branch, half, shift in branches], dim=-1)
        conv = self.dwconv(v)
        channel_gate = torch.sigmoid(_tokens(self.channel_interaction(conv)))
        spatial_gate = torch.sigmoid(self.spatial_interaction(_image(attended)))
        return self.proj(attended * channel_gate + _tokens(spatial_gate * conv))


class ChannelAttention(AdaptiveAttention):
    """Channel self-attention (official `Adaptive_Channel_Attention`, XCiT style): per head, the d channels
    attend to each other over all H·W positions with L2-normalised q, k and a learned `temperature`.

    It runs through `kernels.window_attention` with the d channels as the tokens and the H·W positions as
    the feature dim: q·temperature with scale 1.0 gives softmax(q̂·k̂ᵀ·temperature)·v, the official d×d
    attention. The AIM gates cross the other way round from `SpatialAttention`'s.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__(dim, qkv_bias)
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1)  # each (B, heads, d, H·W)
        q = (F.normalize(q, dim=-1) * self.temperature).to(v.dtype)  # autocast computes norms in fp32
        k = F.normalize(k, dim=-1).to(v.dtype)
        attended = window_attention(q, k, v, scale=1.0).reshape(b, c, h, w)
        conv = self.dwconv(v.reshape(b, c, h, w))
        spatial_gate = torch.sigmoid(self.spatial_interaction(conv))
        channel_gate = torch.sigmoid(self.channel_interaction(attended))
        return self.proj(_tokens(attended * spatial_gate) + _tokens(conv * channel_gate))


class SpatialGate(nn.Module):
    """Half the channels, normalised and depth-wise convolved, gate the other half."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return x1 * _tokens(self.conv(_image(self.norm(x2))))


class SGFN(nn.Module):
    """Spatial-gate feed-forward network: Linear → GELU → spatial gate (halves the width) → Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.sg = SpatialGate(hidden // 2)
        self.fc2 = nn.Linear(hidden // 2, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.sg(self.act(self.fc1(x))))


class DATB(nn.Module):
    """Dual aggregation transformer block: pre-norm attention (spatial or channel) and SGFN, residual."""

    def __init__(self, attn: AdaptiveAttention, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = SGFN(dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


def is_shifted(group: int, block: int) -> bool:
    """Whether spatial block `block` of residual group `group` shifts its windows: blocks 2, 6, 10, … in
    even groups, 0, 4, 8, … in odd groups (the official rule)."""
    return block % 4 == 0 if group % 2 else block % 4 == 2


class ResidualGroup(nn.Module):
    """`depth` blocks alternating spatial (even index) and channel attention, a conv, and a skip."""

    def __init__(self, group: int, dim: int, depth: int, num_heads: int, split_size: Window, hidden: int,
                 qkv_bias: bool, resi_connection: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            DATB(SpatialAttention(dim, num_heads, split_size, is_shifted(group, i), qkv_bias) if i % 2 == 0
                 else ChannelAttention(dim, num_heads, qkv_bias), dim, hidden)
            for i in range(depth)
        )
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor) -> Tensor:
        res = x
        for block in self.blocks:
            x = block(x)
        return res + _tokens(self.conv(_image(x)))


class _ChannelsLast(nn.Module):
    """(B, C, H, W) → (B, H, W, C): the official `Rearrange('b c h w -> b (h w) c')` before the blocks."""

    def forward(self, x: Tensor) -> Tensor:
        return _tokens(x)


class DAT(nn.Module):
    """DAT: conv, residual groups of dual aggregation blocks, conv with a long skip, upsampler.

    Defaults are the released DAT. `upsampler` 'pixelshuffle' (conv to 64, LeakyReLU, x2^n/x3 pixel
    shuffle, conv) or 'pixelshuffledirect' (one conv + shuffle, DAT-light). Training-only options of the
    official class (dropout, drop path, checkpointing, `qk_scale`) are left out; the official `upscale` is
    `scale` here, and its `img_size` only sized precomputed masks, which are built per input size here.
    `unshuffle_mod` is traiNNer-redux's x1/x2 variant: a PixelUnshuffle by 4/scale before conv_first (keys
    `conv_first.1`), the body at a quarter of the output size and an x4 upsampler; the input is
    reflect-padded to the unshuffle factor and the output cropped back.
    """

    def __init__(self, *, in_chans: int = 3, embed_dim: int = 180, split_size: Sequence[int] = (8, 32),
                 depth: Sequence[int] = (6,) * 6, num_heads: Sequence[int] = (6,) * 6,
                 expansion_factor: float = 4.0, qkv_bias: bool = True, img_range: float = 1.0,
                 resi_connection: str = "1conv", upsampler: str = "pixelshuffle", scale: int = 4,
                 unshuffle_mod: bool = False) -> None:
        super().__init__()
        if unshuffle_mod and scale not in (1, 2):
            raise ValueError(f"unshuffle_mod is for x1 and x2 models, not x{scale}")
        self.scale, self.unshuffle = scale, 4 // scale if unshuffle_mod else 1
        upscale = 4 if unshuffle_mod else scale
        s0, s1 = split_size
        if max(s0, s1) % min(s0, s1):
            raise ValueError(f"split_size {[s0, s1]}: the larger side must be a multiple of the smaller")
        if len(num_heads) != len(depth):
            raise ValueError(f"num_heads {list(num_heads)} needs one entry per group of depth {list(depth)}")
        self.img_range = img_range
        self.upsampler = upsampler
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        hidden = int(embed_dim * expansion_factor)
        first = nn.Conv2d(in_chans * self.unshuffle**2, embed_dim, 3, 1, 1)
        self.conv_first = nn.Sequential(nn.PixelUnshuffle(self.unshuffle), first) if unshuffle_mod else first
        self.before_RG = nn.Sequential(_ChannelsLast(), nn.LayerNorm(embed_dim))
        self.layers = nn.ModuleList(
            ResidualGroup(i, embed_dim, d, heads, (s0, s1), hidden, qkv_bias, resi_connection)
            for i, (d, heads) in enumerate(zip(depth, num_heads, strict=True))
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)
        if upsampler == "pixelshuffle":
            num_feat = 64
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsampler(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(upscale, embed_dim, in_chans)
        else:
            raise ValueError(f"upsampler must be 'pixelshuffle' or 'pixelshuffledirect', not {upsampler!r}")

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.before_RG(x)
        for layer in self.layers:
            x = layer(x)
        return _image(self.norm(x))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        k = self.unshuffle
        if k > 1:
            x = reflect_pad_to(x, k)
        x = (x - self.mean) * self.img_range
        x = self.conv_first(x)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.upsample(x)
        x = x / self.img_range + self.mean
        return x[:, :, : h * self.scale, : w * self.scale] if k > 1 else x


_KEYS = ("before_RG.1.weight", "norm.weight",
         *(f"layers.0.blocks.0.{key}" for key in (
             "attn.qkv.weight", "attn.attns.0.rpe_biases", "attn.attns.0.relative_position_index",
             "attn.attns.0.pos.pos_proj.weight", "attn.dwconv.1.running_mean", "ffn.fc1.weight",
             "ffn.sg.conv.weight")))


def detect(state_dict: StateDict) -> bool:
    """DAT's own keys (position-bias MLP, SGFN spatial gate, `before_RG`); SwinIR, HAT, SRFormer and RGT
    checkpoints lack them whatever the registry order."""
    return (all(key in state_dict for key in _KEYS)
            and ("conv_first.weight" in state_dict or "conv_first.1.weight" in state_dict)
            and ("conv_after_body.weight" in state_dict or "conv_after_body.4.weight" in state_dict)
            and ("conv_last.weight" in state_dict or "upsample.0.weight" in state_dict))


def _split_size(state_dict: StateDict) -> list[int]:
    """(s0, s1) from the last row of branch 0's `rpe_biases`, (s0−1, s1−1), checked against its shapes."""
    prefix = "layers.0.blocks.0.attn.attns.0."
    offsets = state_dict[prefix + "rpe_biases"]
    s0, s1 = (int(v) + 1 for v in offsets[-1].tolist())
    tokens = shape(state_dict, prefix + "relative_position_index")
    if s0 < 1 or s1 < 1 or offsets.shape != ((2 * s0 - 1) * (2 * s1 - 1), 2) or tokens != (s0 * s1,) * 2:
        raise MissingHyperParameter(f"cannot tell the split size: {prefix}rpe_biases ends at "
                                    f"{offsets[-1].tolist()} but has shape {tuple(offsets.shape)}")
    return [s0, s1]


def _num_heads(state_dict: StateDict, group: int) -> int:
    """Heads of a group from a channel block's `temperature`; a one-block group has only a spatial block
    whose branches hold heads//2 each, and 2·(heads//2) heads build the identical network."""
    temperature = f"layers.{group}.blocks.1.attn.temperature"
    if temperature in state_dict:
        return shape(state_dict, temperature)[0]
    return 2 * shape(state_dict, f"layers.{group}.blocks.0.attn.attns.0.pos.pos3.2.weight")[0]


def _expansion(state_dict: StateDict, embed_dim: int) -> float:
    hidden = shape(state_dict, "layers.0.blocks.0.ffn.fc1.weight")[0]
    expansion = hidden / embed_dim
    if int(embed_dim * expansion) != hidden:
        raise MissingHyperParameter(f"cannot tell expansion_factor: ffn.fc1 maps {embed_dim} to {hidden} "
                                    "channels, which no factor reproduces exactly")
    return expansion


def _direct_scale(state_dict: StateDict, in_chans: int) -> int:
    out_channels = shape(state_dict, "upsample.0.weight")[0]
    scale = math.isqrt(out_channels // in_chans)
    if scale < 2 or scale * scale * in_chans != out_channels:
        raise MissingHyperParameter(f"cannot tell the scale: upsample.0.weight has {out_channels} outputs, "
                                    f"not scale² x {in_chans} channels")
    return scale


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    """DAT's constructor arguments read off the weights; `scale` must agree with the upsampler's.

    Not stored, so the official default of every released model is used: img_range 1.0 (qk_scale None).
    """
    unshuffle = "conv_first.1.weight" in state_dict
    embed_dim, inputs = shape(state_dict, "conv_first.1.weight" if unshuffle else "conv_first.weight")[:2]
    groups = count_prefixed(state_dict, "layers.")
    if "conv_last.weight" in state_dict:
        in_chans = shape(state_dict, "conv_last.weight")[0]
        upsampler, found = "pixelshuffle", upsampler_scale(state_dict, "upsample.")
    else:
        in_chans = (3 if inputs % 3 == 0 else 1) if unshuffle else inputs
        upsampler, found = "pixelshuffledirect", _direct_scale(state_dict, in_chans)
    extra: dict = {}
    if unshuffle:
        factor = math.isqrt(inputs // in_chans)
        if factor * factor * in_chans != inputs or found != 4 or factor not in (2, 4):
            raise MissingHyperParameter(
                f"cannot tell the unshuffle factor: conv_first.1 takes {inputs} channels and the upsampler "
                f"is x{found} (unshuffle_mod takes channels·k², k 2 or 4, and upsamples x4)"
            )
        found, extra = 4 // factor, {"unshuffle_mod": True}
    if scale not in (None, found):
        raise MissingHyperParameter(f"these DAT weights are x{found}, not x{scale}")
    return {
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "split_size": _split_size(state_dict),
        "depth": [count_prefixed(state_dict, f"layers.{i}.blocks.") for i in range(groups)],
        "num_heads": [_num_heads(state_dict, i) for i in range(groups)],
        "expansion_factor": _expansion(state_dict, embed_dim),
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in state_dict,
        "resi_connection": "1conv" if "conv_after_body.weight" in state_dict else "3conv",
        "upsampler": upsampler,
        "scale": found,
        **extra,
    }


def ignored_keys(key: str) -> bool:
    """The shifted blocks' `attn_mask_0/1`, built at the training img_size; masks are rebuilt per input."""
    return key.endswith((".attn_mask_0", ".attn_mask_1"))


_FULL = {"embed_dim": 180, "depth": [6] * 6, "num_heads": [6] * 6, "resi_connection": "1conv",
         "upsampler": "pixelshuffle"}

FAMILY = Family(
    name="DAT",
    build=DAT,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=32,  # the larger split size of every released model (DAT-S: 16): tiles need no padding
    scales=(2, 3, 4),
    supports_fp16=False,
    supports_bf16=True,
    presets={
        "DAT": dict(_FULL, split_size=[8, 32], expansion_factor=4.0),
        "DAT-S": dict(_FULL, split_size=[8, 16], expansion_factor=2.0),
        "DAT-2": dict(_FULL, split_size=[8, 32], expansion_factor=2.0),
        "DAT-light": {"embed_dim": 60, "depth": [18], "num_heads": [6], "split_size": [8, 32],
                      "expansion_factor": 2.0, "resi_connection": "3conv", "upsampler": "pixelshuffledirect"},
    },
    ignored_keys=ignored_keys,
)
