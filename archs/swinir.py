"""SwinIR, shifted-window transformer restoration (Liang et al., ICCV-W 2021): super-resolution, denoising
and JPEG artifact removal.

Official code: JingyunLiang/SwinIR `models/network_swinir.py` (class `SwinIR`), released configurations in
`main_test_swinir.py::define_model`. Parameter names equal the official checkpoint keys; the buffers the
official model saves (`attn_mask`, sized by the training patch, and `relative_position_index`) are rebuilt
from `kernels` helpers and dropped on load. Input and output are RGB (or gray, `in_chans=1`) in [0, 1] of
any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import kernels
from archs.blocks import (
    DIV2K_RGB_MEAN,
    Mlp,
    UpsampleOneStep,
    Upsampler,
    reflect_pad_to,
    residual_conv,
    upsampler_scale,
)
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")  # "": scale 1, restoration
NUM_FEAT = 64  # width of the pixelshuffle and nearest+conv reconstruction, fixed in the official code


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws×ws windows with a learned relative-position bias (W-MSA)."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", kernels.relative_position_index(window_size),
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """(B·nW, N, C) window tokens → (B·nW, N, C); `mask` is the (nW, N, N) shift mask or None."""
        windows, tokens, channels = x.shape
        qkv = self.qkv(x).reshape(windows, tokens, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = kernels.relative_position_bias(self.relative_position_bias_table, self.relative_position_index)
        # Under autocast q/k/v come out of the Linear in bf16 while the table and mask stay fp32: the op takes
        # all of them in the computation dtype.
        mask = None if mask is None else mask.to(q.dtype)
        x = kernels.window_attention(q, k, v, bias=bias.to(q.dtype), mask=mask)
        return self.proj(x.transpose(1, 2).reshape(windows, tokens, channels))


class SwinTransformerBlock(nn.Module):
    """Pre-norm window attention (shifted by ws/2 in odd blocks) and MLP, each with a residual connection."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        h, w = x_size
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shifted = self.norm1(x).view(b, h, w, c)
        mask = None
        if shift:
            shifted = kernels.cyclic_shift(shifted, (-shift, -shift))
            mask = kernels.shift_window_mask(h, w, ws, shift, device=x.device, dtype=x.dtype)
        windows = kernels.window_partition(shifted, ws).reshape(-1, ws * ws, c)
        shifted = kernels.window_reverse(self.attn(windows, mask), ws, h, w)
        if shift:
            shifted = kernels.cyclic_shift(shifted, (shift, shift))
        x = x + shifted.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
    """`depth` Swin blocks alternating plain and shifted windows (keys `blocks.N`)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, shift_size=(i % 2) * (window_size // 2),
                                 mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, x_size)
        return x


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    """(B, H·W, C) → (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x_size[0], x_size[1])


def run_groups(
    x: torch.Tensor, patch_embed: nn.Module, layers: nn.ModuleList, norm: nn.Module
) -> torch.Tensor:
    """The deep-feature path of SwinIR and DRCT: (B, C, H, W) → tokens → each residual group (given the map
    size) → LayerNorm → (B, C, H, W); H and W multiples of the window."""
    x_size = (x.shape[2], x.shape[3])
    tokens = patch_embed(x)
    for layer in layers:
        tokens = layer(tokens, x_size)
    return to_map(norm(tokens), x_size)


class RSTB(nn.Module):
    """Residual Swin transformer block: a `BasicLayer`, a conv on the feature map, plus the input."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float,
                 qkv_bias: bool, resi_connection: str) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, num_heads, window_size, mlp_ratio, qkv_bias)
        self.conv = residual_conv(dim, resi_connection)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        return to_tokens(self.conv(to_map(self.residual_group(x, x_size), x_size))) + x


class PatchEmbed(nn.Module):
    """Feature map to tokens, with the optional LayerNorm of `patch_norm` (key `patch_embed.norm`)."""

    def __init__(self, dim: int, patch_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim) if patch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_tokens(x)
        return x if self.norm is None else self.norm(x)


class SwinIR(nn.Module):
    """SwinIR: conv, residual Swin groups, conv with a long skip, then an upsampler or (scale 1) a last conv.

    Defaults are the classical SwinIR-M. `upsampler`: 'pixelshuffle' (classical, x2/x3/x4/x8),
    'pixelshuffledirect' (lightweight, one conv + shuffle), 'nearest+conv' (real-world, x2/x4) or '' (scale
    1: denoising and JPEG artifact removal, whose output is the input plus a predicted residual). The input
    is reflect-padded to a multiple of `window_size` and the output cropped back, as the official `forward`.
    Not configurable, as every released SR model: patch size 1, no absolute position embedding, default
    qk scale; the training `img_size` has no effect here since shift masks are built for each input size.
    """

    def __init__(self, scale: int = 4, in_chans: int = 3, embed_dim: int = 180,
                 depths: Sequence[int] = (6,) * 6, num_heads: Sequence[int] = (6,) * 6, window_size: int = 8,
                 mlp_ratio: float = 2.0, upsampler: str = "pixelshuffle", resi_connection: str = "1conv",
                 img_range: float = 1.0, qkv_bias: bool = True, patch_norm: bool = True,
                 start_unshuffle: int = 1) -> None:
        super().__init__()
        upscale = scale * start_unshuffle  # the upsampler's own factor
        if upsampler not in UPSAMPLERS:
            raise ValueError(f"upsampler must be one of {', '.join(UPSAMPLERS)}, not {upsampler!r}")
        if upsampler == "nearest+conv" and upscale not in (2, 4):
            raise ValueError(f"the nearest+conv upsampler supports scales 2 and 4, not {upscale}")
        if start_unshuffle == 1 and (upsampler == "") != (scale == 1):
            raise ValueError(f"scale 1 goes with upsampler '' (and only it), not scale {scale} with "
                             f"{upsampler!r}")
        if start_unshuffle > 1 and upsampler == "":
            raise ValueError("start_unshuffle needs an upsampler (the input residual of upsampler '' cannot "
                             "take the unshuffled channels)")
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        self.scale, self.upscale, self.unshuffle = scale, upscale, start_unshuffle
        self.window_size = window_size
        self.upsampler = upsampler
        self.img_range = img_range
        mean = torch.tensor(DIV2K_RGB_MEAN) if in_chans == 3 else torch.zeros(1)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans * start_unshuffle**2, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, depth, heads, window_size, mlp_ratio, qkv_bias, resi_connection)
            for depth, heads in zip(depths, num_heads, strict=True)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = residual_conv(embed_dim, resi_connection)

        if upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(upscale, embed_dim, in_chans)
        elif upsampler == "":
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        else:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            if upsampler == "pixelshuffle":
                self.upsample = Upsampler(upscale, NUM_FEAT, identity_at_1=start_unshuffle > 1)
            else:
                self.conv_up1 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                if upscale == 4:
                    self.conv_up2 = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                self.conv_hr = nn.Conv2d(NUM_FEAT, NUM_FEAT, 3, 1, 1)
                self.lrelu = nn.LeakyReLU(0.2, inplace=True)
            self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_groups(x, self.patch_embed, self.layers, self.norm)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deep features plus the shallow skip (B, embed, H, W) → the (B, C, sH, sW) image, mean removed."""
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(x)
        x = self.conv_before_upsample(x)
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(x))
        x = self.lrelu(self.conv_up1(F.interpolate(x, scale_factor=2, mode="nearest")))
        if self.upscale == 4:
            x = self.lrelu(self.conv_up2(F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        ws = self.window_size * self.unshuffle  # windows of the unshuffled map
        x = reflect_pad_to(x, ws)
        x = (x - self.mean) * self.img_range
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        features = self.conv_first(x)
        features = self.conv_after_body(self.forward_features(features)) + features
        x = x + self.conv_last(features) if self.upsampler == "" else self.reconstruct(features)
        x = x / self.img_range + self.mean
        return x[:, :, : h * self.scale, : w * self.scale]


PRESETS: dict[str, dict] = {
    "swinir-classic": {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 8,
                       "mlp_ratio": 2.0, "upsampler": "pixelshuffle", "resi_connection": "1conv"},
    "swinir-light": {"embed_dim": 60, "depths": (6,) * 4, "num_heads": (6,) * 4, "window_size": 8,
                     "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect", "resi_connection": "1conv"},
    "swinir-real-M": {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 8,
                      "mlp_ratio": 2.0, "upsampler": "nearest+conv", "resi_connection": "1conv"},
    "swinir-dn": {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 8,
                  "mlp_ratio": 2.0, "upsampler": "", "resi_connection": "1conv", "img_range": 1.0},
    "swinir-car": {"embed_dim": 180, "depths": (6,) * 6, "num_heads": (6,) * 6, "window_size": 7,
                   "mlp_ratio": 2.0, "upsampler": "", "resi_connection": "1conv", "img_range": 255.0},
    "swinir-real-L": {"embed_dim": 240, "depths": (6,) * 9, "num_heads": (8,) * 9, "window_size": 8,
                      "mlp_ratio": 2.0, "upsampler": "nearest+conv", "resi_connection": "3conv"},
}

# The official JPEG artifact-removal models: 7×7 windows, inputs scaled to 0..255 (`main_test_swinir.py`).
JPEG_WINDOW, JPEG_IMG_RANGE = 7, 255.0

_BLOCK = "layers.0.residual_group.blocks.0."
_KEYS = ("conv_first.weight", "norm.weight", f"{_BLOCK}norm1.weight", f"{_BLOCK}attn.qkv.weight",
         f"{_BLOCK}attn.relative_position_bias_table", f"{_BLOCK}attn.proj.weight", f"{_BLOCK}mlp.fc1.weight")
# Key fragments of the Swin-derived families that share SwinIR's layout: HAT (overlapping cross-attention,
# conv block), SRFormer (permuted attention, conv FFN), Swin2SR (continuous position bias).
_FOREIGN = ("relative_position_index_SA", "overlap_attn", "conv_block.", "aligned_relative_position_index",
            "attn.q.weight", "attn.kv.weight", "mlp.dwconv", "logit_scale", "cpb_mlp")


def detect(state_dict: StateDict) -> bool:
    first = "conv_first.weight" in state_dict or "conv_first.1.weight" in state_dict  # (unshuffle front end)
    if not first or not all(key in state_dict for key in _KEYS[1:]):
        return False
    return not any(fragment in key for key in state_dict for fragment in _FOREIGN)


def ignored_keys(key: str) -> bool:
    """The buffers rebuilt at run time: shift masks sized by the training patch, relative-position indices."""
    return key.endswith((".attn_mask", ".relative_position_index"))


def _window_size(state_dict: StateDict) -> int:
    rows = shape(state_dict, f"{_BLOCK}attn.relative_position_bias_table")[0]
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise MissingHyperParameter(f"cannot tell the window size: the position-bias table has {rows} rows, "
                                    "not (2·window − 1)²")
    window_size = (side + 1) // 2
    index = f"{_BLOCK}attn.relative_position_index"
    if index in state_dict and shape(state_dict, index) != (window_size**2,) * 2:
        raise MissingHyperParameter(f"cannot tell the window size: {index} is {shape(state_dict, index)} "
                                    f"but the position-bias table is for {window_size}×{window_size} windows")
    return window_size


def _upsampler(state_dict: StateDict, embed_dim: int) -> str:
    if "conv_up1.weight" in state_dict:
        return "nearest+conv"
    if "conv_before_upsample.0.weight" in state_dict:
        return "pixelshuffle"
    if "upsample.0.weight" in state_dict:
        return "pixelshuffledirect"
    if "conv_last.weight" in state_dict and shape(state_dict, "conv_last.weight")[1] == embed_dim:
        return ""  # scale 1: the last conv reads the deep features directly
    raise MissingHyperParameter("cannot tell the upsampler: neither an upsampler (conv_before_upsample, "
                                "upsample, conv_up1) nor a scale-1 conv_last reading the features")


def _scale(state_dict: StateDict, upsampler: str, in_chans: int, identity: bool = False) -> int:
    """The upsampler's own factor (with `identity`, an empty pixel-shuffle upsampler is x1)."""
    if upsampler == "":
        return 1
    if upsampler == "nearest+conv":
        return 4 if "conv_up2.weight" in state_dict else 2
    if upsampler == "pixelshuffle":
        return upsampler_scale(state_dict, "upsample.", identity_at_1=identity)
    out_channels = shape(state_dict, "upsample.0.weight")[0]
    scale = math.isqrt(out_channels // in_chans)
    if scale < 2 or scale * scale * in_chans != out_channels:
        raise MissingHyperParameter(f"cannot tell the scale: upsample.0.weight has {out_channels} output "
                                    f"channels, not scale² × {in_chans}")
    return scale


def _mlp_ratio(state_dict: StateDict, embed_dim: int) -> float:
    hidden = shape(state_dict, f"{_BLOCK}mlp.fc1.weight")[0]
    ratio = hidden / embed_dim
    if int(embed_dim * ratio) != hidden:
        raise MissingHyperParameter(f"cannot tell mlp_ratio: no ratio gives {hidden} hidden features from "
                                    f"{embed_dim}")
    return ratio


def _resi_connection(state_dict: StateDict) -> str:
    if "conv_after_body.weight" in state_dict:
        return "1conv"
    if "conv_after_body.4.weight" in state_dict:
        return "3conv"
    raise MissingHyperParameter("cannot tell resi_connection: neither conv_after_body.weight (1conv) nor "
                                "conv_after_body.{0,2,4}.weight (3conv)")


def params_from_state_dict(state_dict: StateDict, scale: int | None = None) -> dict:
    """SwinIR's constructor arguments read off the weights; `scale` must agree with the upsampler's.

    Everything is read from shapes and keys but `img_range`, which no checkpoint stores. The rule: 255 for
    scale-1 weights with 7×7 windows, the official JPEG artifact-removal models (`006_*CAR*`, the only
    released configuration with that window), 1.0 for everything else (every released super-resolution and
    denoising model). A file whose settings differ says so in its metadata or zoo entry
    (the family's `unstored` settings), which the loader applies over this rule.
    """
    embed_dim, inputs = shape(state_dict, "conv_first.weight")[:2]
    layers = count_prefixed(state_dict, "layers.")
    depths = tuple(count_prefixed(state_dict, f"layers.{i}.residual_group.blocks.") for i in range(layers))
    num_heads = tuple(
        shape(state_dict, f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table")[1]
        for i in range(layers)
    )
    upsampler = _upsampler(state_dict, embed_dim)
    in_chans, unshuffle = _channels(state_dict, upsampler, inputs)
    upscale = _scale(state_dict, upsampler, in_chans, identity=unshuffle > 1)
    found = upscale // unshuffle
    if found * unshuffle != upscale:
        raise MissingHyperParameter(f"cannot tell the scale: a x{upscale} upsampler after a {unshuffle}x "
                                    "unshuffle is no whole scale")
    if scale not in (None, found):
        raise MissingHyperParameter(f"these SwinIR weights are x{found}, not x{scale}")
    window_size = _window_size(state_dict)
    img_range = JPEG_IMG_RANGE if found == 1 and window_size == JPEG_WINDOW else 1.0
    return {"scale": found, "in_chans": in_chans, "embed_dim": embed_dim, "depths": depths,
            "num_heads": num_heads, "window_size": window_size,
            "mlp_ratio": _mlp_ratio(state_dict, embed_dim), "upsampler": upsampler,
            "resi_connection": _resi_connection(state_dict), "img_range": img_range,
            "qkv_bias": f"{_BLOCK}attn.qkv.bias" in state_dict,
            "patch_norm": "patch_embed.norm.weight" in state_dict,
            **({"start_unshuffle": unshuffle} if unshuffle > 1 else {})}


def _channels(state_dict: StateDict, upsampler: str, inputs: int) -> tuple[int, int]:
    """(image channels, unshuffle factor): the last layer gives the channels, conv_first takes channels·k²
    (traiNNer/neosr's `start_unshuffle`, a PixelUnshuffle before conv_first)."""
    if upsampler == "pixelshuffledirect":
        outputs = shape(state_dict, "upsample.0.weight")[0]
        candidates = [c for c in (3, 1) if _square_times(inputs, c) and _square_times(outputs, c)]
        if not candidates:
            raise MissingHyperParameter(f"cannot tell the image channels: conv_first takes {inputs} channels "
                                        f"and upsample.0 gives {outputs}")
        channels = inputs if inputs in candidates else candidates[0]
    else:
        channels = shape(state_dict, "conv_last.weight")[0]
    unshuffle = math.isqrt(inputs // channels)
    if unshuffle * unshuffle * channels != inputs:
        raise MissingHyperParameter(f"cannot tell the unshuffle factor: conv_first takes {inputs} channels "
                                    f"for {channels}-channel images, not {channels}·k²")
    return channels, unshuffle


def _square_times(n: int, c: int) -> bool:
    """Whether n is c times a perfect square."""
    return n % c == 0 and math.isqrt(n // c) ** 2 * c == n


def remap_keys(state_dict: StateDict) -> StateDict:
    """neosr's and older traiNNer's unshuffle front end keeps conv_first as `conv_first.1` after the
    PixelUnshuffle (`conv_first.0`); ours is one conv after a functional unshuffle."""
    if "conv_first.1.weight" not in state_dict:
        return state_dict
    return {key.replace("conv_first.1.", "conv_first.", 1): value for key, value in state_dict.items()}


FAMILY = Family(
    name="SwinIR",
    build=SwinIR,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=8,  # the window of every released SR model; other windows pad inside the network
    scales=(1, 2, 3, 4, 8),
    supports_fp16=False,
    supports_bf16=True,
    channels_last=True,
    presets=PRESETS,
    ignored_keys=ignored_keys,
    unstored=("img_range",),
    remap_keys=remap_keys,
)
