"""SRFormer, permuted self-attention for SR (Zhou et al., ICCV 2023), keyed as the official checkpoints.

Official code: HVision-NKU/SRFormer `basicsr/archs/srformer_arch.py` (@d0c2da6). Its code and released weights
are CC BY-NC 4.0, so the official checkpoints are for non-commercial use only; this is an independent
implementation that shares their parameter and buffer names. Input and output are RGB in [0, 1] of any size:
as the official forward, the input is reflect-padded to a window multiple and the output cropped.

Not stored in the weights and fixed in every release, so taken from the official defaults: `qk_scale` None
(scale d^-0.5), `patch_size` 1, `img_range` 1.0 (unless a file's metadata or zoo entry says otherwise) and the
DIV2K mean for RGB (zeros otherwise); `ape` is not supported. The upsampler-less scale-1 variant of the
official code (denoising, JPEG; `upsampler=''`, a last conv adding a residual to the input, as SwinIR's) is,
though no weights of it were released. `img_size` (the training patch side) only decides
whether odd blocks shift (not when it fits in one window); it is read from the shape of the stored
`attn_mask` buffers, which are dropped on load, rebuilt per input size at run time, and written again (at
the training size) by `state_dict()`. The `scale` argument is the official `upscale`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import kernels
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
    aligned_relative_position_index,
    cyclic_shift,
    permuted_shift_window_mask,
    relative_position_bias,
    window_partition,
    window_reverse,
)

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")  # "": scale 1, restoration
NUM_FEAT = 64  # width of the pixelshuffle and nearest+conv reconstruction heads, fixed upstream


class PSA(nn.Module):
    """Permuted self-attention: queries on the ws² tokens of a window; keys and values from `kv` (C → C/2)
    with each 2×2 token group merged into one C-channel token, so Nk = ws²/4 at the queries' head dim."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if window_size % 2 or dim % 4 or dim % num_heads:
            raise ValueError(
                f"PSA needs an even window (got {window_size}) and a dim divisible by 4 and by "
                f"the heads (got {dim}, {num_heads} heads)"
            )
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((window_size - 1) ** 2, num_heads))
        self.register_buffer("aligned_relative_position_index", aligned_relative_position_index(window_size))
        self.kv = nn.Linear(dim, dim // 2, bias=qkv_bias)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: (B·nW, ws, ws, C) windows → (B·nW, ws, ws, C); mask: (nW, ws², ws²/4) or None."""
        b, ws, _, c = x.shape
        half, heads = ws // 2, self.num_heads
        q = self.q(x).reshape(b, ws * ws, heads, c // heads).transpose(1, 2)
        # kv channel t·C/4 + e of token (2i+a, 2j+b) → channel a·C/2 + b·C/4 + e of merged token (i, j)
        # of K (t = 0) or V (t = 1)
        kv = self.kv(x).reshape(b, half, 2, half, 2, 2, c // 4).permute(5, 0, 1, 3, 2, 4, 6)
        k, v = kv.reshape(2, b, half * half, heads, c // heads).transpose(2, 3).unbind(0)
        bias = relative_position_bias(self.relative_position_bias_table, self.aligned_relative_position_index)
        mask = None if mask is None else mask.to(q.dtype)
        out = kernels.window_attention(q, k, v, bias=bias.to(q.dtype), mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, ws, ws, c))


class DepthwiseConv(nn.Module):
    """5×5 depthwise conv + GELU on (B, H, W, C) tokens (the official `dwconv`, keys `depthwise_conv.0`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise_conv = nn.Sequential(
            nn.Conv2d(channels, channels, 5, padding=2, groups=channels), nn.GELU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.depthwise_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ConvFFN(nn.Module):
    """fc1 → GELU → (+ depthwise conv branch) → fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = DepthwiseConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.fc1(x))
        return self.fc2(x + self.dwconv(x))


class PSABlock(nn.Module):
    """Pre-norm block: (shifted) window PSA and ConvFFN, each with a residual, on (B, H, W, C) tokens.

    A shifted block's mask is rebuilt for every input size. Its state dict still carries the official
    `attn_mask` (the mask at the training resolution `train_size`), so saved weights say that the block shifts
    and load in the official code; loading drops it again.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        train_size: int,
    ) -> None:
        super().__init__()
        self.window_size, self.shift_size, self.train_size = window_size, shift_size, train_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = PSA(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))
        if shift_size:
            self.register_state_dict_post_hook(_save_attn_mask)
            self.register_load_state_dict_pre_hook(_drop_attn_mask)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        h, w, ws, shift = x.shape[1], x.shape[2], self.window_size, self.shift_size
        y = self.norm1(x)
        if shift:
            y = cyclic_shift(y, -shift)
        y = window_reverse(self.attn(window_partition(y, ws), mask if shift else None), ws, h, w)
        if shift:
            y = cyclic_shift(y, shift)
        x = x + y
        return x + self.mlp(self.norm2(x))


def _save_attn_mask(block: PSABlock, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    size, device = block.train_size, block.norm1.weight.device
    mask = permuted_shift_window_mask(size, size, block.window_size, block.window_size // 2, device=device)
    state_dict[prefix + "attn_mask"] = mask.clone()


def _drop_attn_mask(block: PSABlock, state_dict: dict, prefix: str, *args: object) -> None:
    state_dict.pop(prefix + "attn_mask", None)


class PSALayer(nn.Module):
    """A run of PSA blocks, every second one shifted by half a window (the official `BasicLayer`)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        train_size: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            PSABlock(dim, num_heads, window_size, shift_size if i % 2 else 0, mlp_ratio, qkv_bias, train_size)
            for i in range(depth)
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class PSAGroup(nn.Module):
    """Residual group: a PSA layer, then a conv on the feature map, plus the group's input."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float,
        qkv_bias: bool,
        train_size: int,
        resi_connection: str,
    ) -> None:
        super().__init__()
        self.residual_group = PSALayer(
            dim, depth, num_heads, window_size, shift_size, mlp_ratio, qkv_bias, train_size
        )
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        y = self.residual_group(x, mask).permute(0, 3, 1, 2)
        return self.conv(y).permute(0, 2, 3, 1) + x


class PatchEmbed(nn.Module):
    """(B, C, H, W) map → (B, H, W, C) tokens, layer-normed when `patch_norm` (key `patch_embed.norm`)."""

    def __init__(self, dim: int, patch_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if patch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        return x if self.norm is None else self.norm(x)


class SRFormer(nn.Module):
    """SRFormer: conv head, PSA residual groups with a long skip, and a SwinIR-style upsampler."""

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 180,
        depths: Sequence[int] = (6, 6, 6, 6, 6, 6),
        num_heads: Sequence[int] = (6, 6, 6, 6, 6, 6),
        window_size: int = 22,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        scale: int = 4,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
        img_size: int = 64,
    ) -> None:
        super().__init__()
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, not {upsampler!r}")
        if upsampler == "nearest+conv" and scale != 4:
            raise ValueError(f"the nearest+conv upsampler is x4 only, not x{scale}")
        if (upsampler == "") != (scale == 1):
            raise ValueError(
                f"scale 1 goes with upsampler '' (and only it), not scale {scale} with {upsampler!r}"
            )
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        self.window_size, self.scale, self.upsampler = window_size, scale, upsampler
        self.img_range = img_range
        # the official blocks work at the training patch side rounded up to the window, and do not shift
        # when that is a single window
        train_size = math.ceil(img_size / window_size) * window_size
        self.shift_size = window_size // 2 if train_size > window_size else 0
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.layers = nn.ModuleList(
            PSAGroup(
                embed_dim,
                depth,
                heads,
                window_size,
                self.shift_size,
                mlp_ratio,
                qkv_bias,
                train_size,
                resi_connection,
            )
            for depth, heads in zip(depths, num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)
        if upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(scale, embed_dim, in_chans)
            return
        if upsampler == "":
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
            return
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        if upsampler == "pixelshuffle":
            self.upsample = Upsampler(scale, NUM_FEAT)
        else:
            self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
            self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
        self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)

    def forward_features(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x)
        mask = None
        if self.shift_size:
            mask = permuted_shift_window_mask(
                x.shape[2],
                x.shape[3],
                self.window_size,
                self.window_size // 2,
                device=x.device,
                dtype=tokens.dtype,
            )
        for layer in self.layers:
            tokens = layer(tokens, mask)
        return self.norm(tokens).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        ws = self.window_size
        x = reflect_pad_to(x, ws)
        mean = self.mean.to(x.dtype)
        normalised = (x - mean) * self.img_range
        x = self.conv_first(normalised)
        x = self.conv_after_body(self.forward_features(x)) + x
        if self.upsampler == "":
            x = normalised + self.conv_last(x)
        elif self.upsampler == "pixelshuffledirect":
            x = self.upsample(x)
        elif self.upsampler == "pixelshuffle":
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        else:
            x = self.conv_before_upsample(x)
            x = F.leaky_relu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
            x = F.leaky_relu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")), 0.2)
            x = self.conv_last(F.leaky_relu(self.conv_hr(x), 0.2))
        x = x / self.img_range + mean
        return x[:, :, : h * self.scale, : w * self.scale]


_ATTN = "layers.0.residual_group.blocks.0.attn."


def detect(state_dict: StateDict) -> bool:
    """PSA keys (`q`, `kv`, the aligned index) and no Swin `qkv` attention (SRFormerV2 interleaves it)."""
    keys = (
        "conv_first.weight",
        _ATTN + "aligned_relative_position_index",
        _ATTN + "q.weight",
        _ATTN + "kv.weight",
        "layers.0.residual_group.blocks.0.mlp.dwconv.depthwise_conv.0.weight",
    )
    return all(key in state_dict for key in keys) and not any(".attn.qkv." in key for key in state_dict)


def _window_size(state_dict: StateDict) -> int:
    n_q, n_k = shape(state_dict, _ATTN + "aligned_relative_position_index")
    window = math.isqrt(n_q)
    rows = shape(state_dict, _ATTN + "relative_position_bias_table")[0]
    if window * window != n_q or window % 2 or (window // 2) ** 2 != n_k or rows != (window - 1) ** 2:
        raise MissingHyperParameter(
            f"cannot tell the SRFormer window: aligned_relative_position_index is {n_q}×{n_k} and the bias "
            f"table has {rows} rows, not ws²×(ws/2)² and (ws−1)² for an even ws"
        )
    return window


def _upsampler(state_dict: StateDict, in_chans: int, embed_dim: int) -> tuple[str, int]:
    if "conv_up1.weight" in state_dict:
        return "nearest+conv", 4
    if "conv_before_upsample.0.weight" in state_dict:
        return "pixelshuffle", upsampler_scale(state_dict, "upsample.")
    if "upsample.0.weight" in state_dict:
        out_channels = shape(state_dict, "upsample.0.weight")[0]
        scale = math.isqrt(out_channels // in_chans)
        if scale * scale * in_chans != out_channels:
            raise MissingHyperParameter(
                f"cannot tell the scale: upsample.0.weight has {out_channels} output "
                f"channels, not {in_chans}·scale²"
            )
        return "pixelshuffledirect", scale
    if "conv_last.weight" in state_dict and shape(state_dict, "conv_last.weight")[1] == embed_dim:
        return "", 1  # scale 1: the last conv reads the deep features directly
    raise MissingHyperParameter(
        "cannot tell the upsampler: neither an upsampler (conv_before_upsample, upsample, conv_up1) nor a "
        "scale-1 conv_last reading the features"
    )


def _img_size(state_dict: StateDict, depths: list[int], window_size: int) -> int:
    """A training patch side that reproduces the stored shifting (only `img_size > window` matters)."""
    for i, depth in enumerate(depths):
        if depth > 1:
            key = f"layers.{i}.residual_group.blocks.1.attn_mask"
            if key not in state_dict:
                return window_size  # odd blocks without a mask: the patch fit in one window, no shift
            return math.isqrt(shape(state_dict, key)[0]) * window_size
    return 64  # no odd block anywhere: shifting cannot matter; the official default


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    if "absolute_pos_embed" in state_dict:
        raise MissingHyperParameter(
            "SRFormer weights with an absolute position embedding (ape) are tied to "
            "their training size and are not supported"
        )
    embed_dim, in_chans = shape(state_dict, "conv_first.weight")[:2]
    window_size = _window_size(state_dict)
    layers = count_prefixed(state_dict, "layers.")
    depths = [count_prefixed(state_dict, f"layers.{i}.residual_group.blocks.") for i in range(layers)]
    num_heads = [
        shape(state_dict, f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table")[1]
        for i in range(layers)
    ]
    hidden = shape(state_dict, "layers.0.residual_group.blocks.0.mlp.fc1.weight")[0]
    mlp_ratio = hidden / embed_dim
    if int(embed_dim * mlp_ratio) != hidden:
        raise MissingHyperParameter(f"no mlp_ratio gives {hidden} hidden channels from {embed_dim}")
    upsampler, stored_scale = _upsampler(state_dict, in_chans, embed_dim)
    if scale not in (None, stored_scale):
        raise MissingHyperParameter(f"these SRFormer weights are x{stored_scale}, not x{scale}")
    return {
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": window_size,
        "mlp_ratio": mlp_ratio,
        "qkv_bias": _ATTN + "q.bias" in state_dict,
        "patch_norm": "patch_embed.norm.weight" in state_dict,
        "scale": stored_scale,
        "upsampler": upsampler,
        "resi_connection": "1conv" if "conv_after_body.weight" in state_dict else "3conv",
        "img_size": _img_size(state_dict, depths, window_size),
    }


_CLASSIC = {
    "embed_dim": 180,
    "depths": [6] * 6,
    "num_heads": [6] * 6,
    "window_size": 22,
    "mlp_ratio": 2.0,
    "upsampler": "pixelshuffle",
    "resi_connection": "1conv",
    "img_size": 64,
}

FAMILY = Family(
    name="SRFormer",
    build=SRFormer,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    # The window is 22, 16 or 24 by variant, and the network pads to it itself: tiles need no rounding.
    multiple_of=1,
    scales=(1, 2, 3, 4),
    supports_fp16=False,
    supports_bf16=True,
    presets={
        "SRFormer": _CLASSIC,
        "SRFormer-light": {
            "embed_dim": 60,
            "depths": [6] * 4,
            "num_heads": [6] * 4,
            "window_size": 16,
            "mlp_ratio": 2.0,
            "upsampler": "pixelshuffledirect",
            "resi_connection": "1conv",
            "img_size": 64,
        },
        "SRFormer-real": dict(_CLASSIC, window_size=24, img_size=48),
    },
    ignored_keys=lambda key: key.endswith(".attn_mask"),
    unstored=("img_range",),
)
