"""DRCT, dense-residual-connected transformer (Hsu et al., CVPR-W 2024), keyed as the official weights.

Official code: ming053l/DRCT `drct/archs/DRCT_arch.py` (network) and `drct/models/drct_model.py` (test-time
reflect padding to a window multiple, done here inside `forward`). DRCT is SwinIR with each residual group
replaced by a residual dense group of five Swin blocks, so the blocks are SwinIR's (attention through
`kernels`). Input and output are RGB (or gray, `in_chans=1`) in [0, 1] of any size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import DIV2K_RGB_MEAN, Upsampler, upsampler_scale, windowed_pixelshuffle_forward
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from archs.swinir import PatchEmbed, SwinTransformerBlock, run_groups

BLOCKS = 5  # Swin blocks per residual dense group, fixed in the official code
GROWTH_SCALE = 0.2  # weight of the group's output on its residual path, fixed in the official code
NUM_FEAT = 64  # width of the pixel-shuffle reconstruction, fixed in the official code


def block_heads(width: int, num_heads: int) -> int:
    """Heads of a dense block `width` channels wide, by the official rule `num_heads − width % num_heads`
    (the group's first block, `embed_dim` wide, takes `num_heads` itself)."""
    heads = num_heads - width % num_heads
    if width % heads:
        raise ValueError(
            f"a {width}-channel DRCT block gets {heads} heads by the official rule "
            f"(num_heads {num_heads} − {width} mod {num_heads}), which do not divide its width"
        )
    return heads


def _pointwise(conv: nn.Conv2d, tokens: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution applied to (B, L, C) tokens directly, as the Linear it is."""
    return F.linear(tokens, conv.weight.flatten(1), conv.bias)


class RDG(nn.Module):
    """Residual dense group: five Swin blocks (windows shifted in the 2nd and 4th), each reading the group
    input concatenated with the `gc`-channel outputs of the blocks before it (1×1 `adjustN` + LeakyReLU 0.2);
    the last 1×1 returns to `dim` channels and is added to the input scaled by 0.2. MLP ratio 1 in blocks 4
    and 5, as upstream."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, gc: int, qkv_bias: bool
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide embed_dim {dim}")
        for i in range(BLOCKS):
            width = dim + i * gc
            heads = num_heads if i == 0 else block_heads(width, num_heads)
            self.add_module(
                f"swin{i + 1}",
                SwinTransformerBlock(
                    width,
                    heads,
                    window_size,
                    shift_size=(i % 2) * (window_size // 2),
                    mlp_ratio=mlp_ratio if i < 3 else 1.0,
                    qkv_bias=qkv_bias,
                ),
            )
            self.add_module(f"adjust{i + 1}", nn.Conv2d(width, gc if i < BLOCKS - 1 else dim, 1))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
        """(B, H·W, dim) tokens → the same."""
        features = [x]
        for i in range(1, BLOCKS + 1):
            block, adjust = getattr(self, f"swin{i}"), getattr(self, f"adjust{i}")
            y = _pointwise(adjust, block(torch.cat(features, dim=-1), x_size))
            if i < BLOCKS:
                features.append(F.leaky_relu(y, 0.2))
        return y * GROWTH_SCALE + x


class DRCT(nn.Module):
    """DRCT with pixel-shuffle reconstruction; the defaults are the released DRCT (not the official
    constructor's, whose upsampler '' returns the input unchanged).

    Takes the official constructor's arguments that change the network, with `scale` for `upscale`. The
    number of groups is `len(num_heads)`; `depths`, accepted because the official option files give it, must
    be as long and has no other effect (each group always holds five blocks; upstream its values only set
    the training-only drop-path schedule). Windows are always shifted in blocks 2 and 4, as in every
    official model trained on patches larger than the window (the official code turns shifting off below).
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_chans: int = 3,
        embed_dim: int = 180,
        num_heads: Sequence[int] = (6,) * 6,
        depths: Sequence[int] | None = None,
        window_size: int = 16,
        mlp_ratio: float = 2.0,
        gc: int = 32,
        qkv_bias: bool = True,
        patch_norm: bool = True,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffle",
        resi_connection: str = "1conv",
    ) -> None:
        super().__init__()
        if upsampler != "pixelshuffle":
            raise ValueError(
                f"DRCT reconstructs with upsampler 'pixelshuffle' only, not {upsampler!r} "
                "(the official forward returns its input unchanged without it)"
            )
        if resi_connection not in ("1conv", "identity"):
            raise ValueError(f"resi_connection must be '1conv' or 'identity', not {resi_connection!r}")
        if depths is not None and len(depths) != len(num_heads):
            raise ValueError(f"depths {list(depths)} and num_heads {list(num_heads)} differ in length")
        self.scale = scale
        self.window_size = window_size
        self.img_range = img_range
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm)
        self.layers = nn.ModuleList(
            RDG(embed_dim, heads, window_size, mlp_ratio, gc, qkv_bias) for heads in num_heads
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = (
            nn.Conv2d(embed_dim, embed_dim, 3, 1, 1) if resi_connection == "1conv" else nn.Identity()
        )
        self.conv_before_upsample = nn.Sequential(
            nn.Conv2d(embed_dim, NUM_FEAT, 3, 1, 1), nn.LeakyReLU(inplace=True)
        )
        self.upsample = Upsampler(scale, NUM_FEAT)
        self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, 1, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return run_groups(x, self.patch_embed, self.layers, self.norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return windowed_pixelshuffle_forward(self, x)


_GROUP = "layers.0."
_KEYS = (
    "conv_first.weight",
    "norm.weight",
    f"{_GROUP}swin1.attn.relative_position_bias_table",
    *(f"{_GROUP}swin{i}.attn.qkv.weight" for i in range(1, BLOCKS + 1)),
    *(f"{_GROUP}adjust{i}.weight" for i in range(1, BLOCKS + 1)),
)


def detect(state_dict: StateDict) -> bool:
    """DRCT's groups hold `swin1`…`swin5` and `adjust1`…`adjust5` directly (no `residual_group.blocks`):
    keys no SwinIR, HAT, SRFormer or DAT checkpoint has."""
    return all(key in state_dict for key in _KEYS)


def ignored_keys(key: str) -> bool:
    """The buffers rebuilt at run time: shift masks sized by the training patch, relative-position indices."""
    return key.endswith((".attn_mask", ".relative_position_index"))


def _window_size(state_dict: StateDict) -> int:
    """ws from the first block's (2ws−1)² bias rows, checked against the saved index and shift mask."""
    key = f"{_GROUP}swin1.attn.relative_position_bias_table"
    rows = shape(state_dict, key)[0]
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise MissingHyperParameter(
            f"cannot tell the window size: {key} has {rows} rows, not (2·window − 1)²"
        )
    window_size = (side + 1) // 2
    tokens = window_size**2
    index = f"{_GROUP}swin1.attn.relative_position_index"
    if index in state_dict and shape(state_dict, index) != (tokens, tokens):
        raise MissingHyperParameter(
            f"cannot tell the window size: {index} is {shape(state_dict, index)} but "
            f"the position-bias table is for {window_size}×{window_size} windows"
        )
    mask = f"{_GROUP}swin2.attn_mask"
    if mask in state_dict:
        if shape(state_dict, mask)[1:] != (tokens, tokens):
            raise MissingHyperParameter(
                f"cannot tell the window size: {mask} is {shape(state_dict, mask)} "
                f"but the position-bias table is for {window_size}×{window_size} windows"
            )
    elif index in state_dict:
        raise MissingHyperParameter(
            f"these DRCT weights keep their buffers but no {mask}: the official model "
            "was built for patches no larger than the window, where it turns window "
            "shifting off, which this implementation does not do"
        )
    return window_size


def _mlp_ratio(state_dict: StateDict, embed_dim: int) -> float:
    hidden = shape(state_dict, f"{_GROUP}swin1.mlp.fc1.weight")[0]
    ratio = hidden / embed_dim
    if int(embed_dim * ratio) != hidden:
        raise MissingHyperParameter(
            f"cannot tell mlp_ratio: no ratio gives {hidden} hidden features from {embed_dim}"
        )
    return ratio


def params_from_state_dict(state_dict: StateDict, scale: int | None = None) -> dict:
    """DRCT's constructor arguments read off the weights; `scale` must agree with the upsampler's.

    Everything is read from shapes and keys but `img_range`, which no checkpoint stores: the rule is 1.0,
    the official default and the value of every released model (a file's metadata or zoo entry may say
    otherwise). The attention scale is head_dim^-0.5 (the official `qk_scale=None`).
    """
    if "conv_before_upsample.0.weight" not in state_dict:
        raise MissingHyperParameter(
            "these DRCT weights have no pixel-shuffle upsampler (conv_before_upsample, "
            "upsample, conv_last); without one the official network returns its "
            "input unchanged"
        )
    found = upsampler_scale(state_dict, "upsample.")
    if scale not in (None, found):
        raise MissingHyperParameter(f"these DRCT weights are x{found}, not x{scale}")
    embed_dim, in_chans = shape(state_dict, "conv_first.weight")[:2]
    groups = count_prefixed(state_dict, "layers.")
    return {
        "scale": found,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "num_heads": tuple(
            shape(state_dict, f"layers.{i}.swin1.attn.relative_position_bias_table")[1] for i in range(groups)
        ),
        "window_size": _window_size(state_dict),
        "mlp_ratio": _mlp_ratio(state_dict, embed_dim),
        "gc": shape(state_dict, f"{_GROUP}adjust1.weight")[0],
        "qkv_bias": f"{_GROUP}swin1.attn.qkv.bias" in state_dict,
        "patch_norm": "patch_embed.norm.weight" in state_dict,
        "img_range": 1.0,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv" if "conv_after_body.weight" in state_dict else "identity",
    }


_DRCT = {
    "embed_dim": 180,
    "num_heads": (6,) * 6,
    "window_size": 16,
    "mlp_ratio": 2.0,
    "gc": 32,
    "upsampler": "pixelshuffle",
    "resi_connection": "1conv",
}

FAMILY = Family(
    name="DRCT",
    build=DRCT,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=16,  # the window of every released model; other windows pad inside the network
    scales=(2, 3, 4, 8),
    supports_fp16=False,
    supports_bf16=True,
    presets={
        "DRCT": _DRCT,
        "DRCT-L": dict(_DRCT, num_heads=(6,) * 12),
    },
    ignored_keys=ignored_keys,
    unstored=("img_range",),
)
