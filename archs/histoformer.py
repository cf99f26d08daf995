"""Histoformer (Sun et al., ECCV 2024): a histogram transformer that restores rain, snow and raindrop images
at scale 1, key-compatible with the official weights (sunshangquan/Histoformer, `histoformer_arch.py`).

A Restormer-style U-Net whose blocks use dynamic-range histogram self-attention: half the channels are sorted
along the height and the width, every channel's positions are sorted by value, split into as many bins as
heads (contiguous runs and interleaved ones) and attended among channel-bins. Input is RGB in [0, 1]; the
network reflect-pads it to a multiple of 8 at the bottom and right and crops the output, as the official
test script (`Allweather/test_histoformer.py`) does around the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import (
    DilatedConv2d,
    PixelShuffle,
    PixelUnshuffle,
    pixel_shuffle,
    pixel_unshuffle,
    reflect_pad_to,
)
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels.sort import sort

FACTOR = 8  # three 2x downsamplings
NORMS = ("WithBias", "BiasFree")
RELEASED_EXPANSION = 2.667  # Allweather_Histoformer.yml


def layer_norm(x: torch.Tensor, with_bias: bool) -> torch.Tensor:
    """The official parameter-free LayerNorm over channels (eps 1e-5), taken in its (B, HW, C) layout so the
    result and its memory layout equal the official ones; 'BiasFree' does not subtract the mean."""
    b, c, h, w = x.shape
    t = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
    sigma = t.var(-1, keepdim=True, unbiased=False)
    t = (t - t.mean(-1, keepdim=True) if with_bias else t) / torch.sqrt(sigma + 1e-5)
    return t.reshape(b, h, w, c).permute(0, 3, 1, 2)


def unsort(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Undo `x = y.sort(dim)` given its indices: x[..., i] goes back to position index[..., i]."""
    return torch.scatter(x, dim, index, x)


class FeedForward(nn.Module):
    """Dual-scale gated feed-forward (DGFF): 1x1 in, pixel shuffle, a 5x5 and a dilated 3x3 depthwise branch
    gated by Mish, pixel unshuffle, 1x1 out."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        if hidden % 4:
            raise ValueError(
                f"feed-forward width int({dim} x {ffn_expansion_factor}) = {hidden} is not a multiple of 4"
            )
        quarter = hidden // 4
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv_5 = nn.Conv2d(quarter, quarter, 5, padding=2, groups=quarter, bias=bias)
        self.dwconv_dilated2_1 = DilatedConv2d(
            quarter, quarter, 3, padding=2, dilation=2, groups=quarter, bias=bias
        )
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = pixel_shuffle(self.project_in(x), 2).chunk(2, dim=1)
        x = F.mish(self.dwconv_dilated2_1(x2)) * self.dwconv_5(x1)
        return self.project_out(pixel_unshuffle(x, 2))


class HistogramAttention(nn.Module):
    """Dynamic-range histogram self-attention (DHSA, the official `Attention_histogram`): attention among the
    (channel, bin) rows of value-sorted features, bins being `num_heads` contiguous runs (box) in one branch
    and `num_heads` interleaved sets in the other; the two results multiply."""

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 5, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 5, dim * 5, 3, padding=1, groups=dim * 5, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def binned_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, box: bool) -> torch.Tensor:
        """(B, C, N) value-sorted q, k, v → (B, C, N): the sequence is zero-padded to a multiple of the
        heads, cut into bins, and each head attends among its channels' bins (softmax with a +1 in the
        denominator, L2-normalised rows, learned temperature)."""
        b, c, n = q.shape
        f = self.num_heads
        pad = (f - n % f) % f
        m = (n + pad) // f

        def to_bins(t: torch.Tensor) -> torch.Tensor:
            t = F.pad(t, (0, pad))
            if box:  # "b (head c) (factor hw) -> b head (c factor) hw"
                return t.reshape(b, f, c, m)
            return t.reshape(b, f, c // f, m, f).transpose(-1, -2).reshape(b, f, c, m)

        q, k, v = (to_bins(t) for t in (q, k, v))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = ((q @ k.transpose(-2, -1)) * self.temperature).exp()
        out = (attn / (attn.sum(-1, keepdim=True) + 1)) @ v
        if box:
            out = out.reshape(b, c, f * m)
        else:
            out = out.reshape(b, f, c // f, f, m).transpose(-1, -2).reshape(b, c, m * f)
        return out[..., :n]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        half = c // 2
        sorted_h, index_h = sort(x[:, :half], -2)
        sorted_hw, index_w = sort(sorted_h, -1)
        x = torch.cat([sorted_hw, x[:, half:]], dim=1)
        q1, k1, q2, k2, v = self.qkv_dwconv(self.qkv(x)).chunk(5, dim=1)
        v, index = sort(v.reshape(b, c, -1), -1)
        q1, k1, q2, k2 = (torch.gather(t.reshape(b, c, -1), 2, index) for t in (q1, k1, q2, k2))
        out1 = unsort(self.binned_attention(q1, k1, v, box=True), index, 2)
        out2 = unsort(self.binned_attention(q2, k2, v, box=False), index, 2)
        out = self.project_out((out1 * out2).reshape(b, c, h, w))
        first = unsort(unsort(out[:, :half], index_w, -1), index_h, -2)
        return torch.cat([first, out[:, half:]], dim=1)


class TransformerBlock(nn.Module):
    """x + DHSA(LN(x)), then + DGFF(LN(x)); the official LayerNorms hold no parameters."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, with_bias_norm: bool
    ) -> None:
        super().__init__()
        self.with_bias_norm = with_bias_norm
        self.attn_g = HistogramAttention(dim, num_heads, bias)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_g(layer_norm(x, self.with_bias_norm))
        return x + self.ffn(layer_norm(x, self.with_bias_norm))


class PatchEmbed(nn.Module):
    """A 3x3 convolution (the official `OverlapPatchEmbed`, always without bias)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SkipPatchEmbed(nn.Module):
    """The image pyramid beside the encoder: 2x2 average pooling, 1x1 and depthwise 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.AvgPool2d(2, stride=2),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), PixelUnshuffle(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Histoformer(nn.Module):
    """Four-level encoder-decoder of histogram transformer blocks with image-pyramid skips; scale 1.

    Arguments keep the official names (`Allweather_Histoformer.yml`'s network_g). `scale` exists for the
    toolkit's generic callers and must be 1. The official `dual_pixel_task` only adds a convolution its
    forward never uses; it is refused rather than built.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 36,
        num_blocks: tuple[int, ...] = (4, 4, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, ...] = (1, 2, 4, 8),
        ffn_expansion_factor: float = RELEASED_EXPANSION,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - the official argument name
        dual_pixel_task: bool = False,
        scale: int = 1,
    ) -> None:
        super().__init__()
        if scale != 1:
            raise ValueError(f"Histoformer restores at scale 1, not x{scale}")
        if inp_channels != 3 or out_channels != 3:
            raise ValueError(
                "Histoformer takes and gives RGB (its image-pyramid skips and residual are 3-channel)"
            )
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ValueError("num_blocks and heads give one value per level (4)")
        if LayerNorm_type not in NORMS:
            raise ValueError(f"LayerNorm_type must be one of {', '.join(NORMS)}, not {LayerNorm_type!r}")
        if dual_pixel_task:
            raise ValueError(
                "dual_pixel_task is not supported (the official forward never uses its skip_conv)"
            )
        norm = LayerNorm_type == "WithBias"

        def level(width: int, count: int, n_heads: int) -> nn.Sequential:
            return nn.Sequential(
                *(TransformerBlock(width, n_heads, ffn_expansion_factor, bias, norm) for _ in range(count))
            )

        d1, d2, d3, d4 = (dim * 2**i for i in range(4))
        self.patch_embed = PatchEmbed(inp_channels, dim)
        self.encoder_level1 = level(d1, num_blocks[0], heads[0])
        self.down1_2 = Downsample(d1)
        self.encoder_level2 = level(d2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(d2)
        self.encoder_level3 = level(d3, num_blocks[2], heads[2])
        self.down3_4 = Downsample(d3)
        self.latent = level(d4, num_blocks[3], heads[3])
        self.up4_3 = Upsample(d4)
        self.reduce_chan_level3 = nn.Conv2d(d4, d3, 1, bias=bias)
        self.decoder_level3 = level(d3, num_blocks[2], heads[2])
        self.up3_2 = Upsample(d3)
        self.reduce_chan_level2 = nn.Conv2d(d3, d2, 1, bias=bias)
        self.decoder_level2 = level(d2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(d2)
        self.decoder_level1 = level(d2, num_blocks[0], heads[0])
        self.refinement = level(d2, num_refinement_blocks, heads[0])
        self.skip_patch_embed1 = SkipPatchEmbed(3)
        self.skip_patch_embed2 = SkipPatchEmbed(3)
        self.skip_patch_embed3 = SkipPatchEmbed(3)
        self.reduce_chan_level_1 = nn.Conv2d(d2 + 3, d2, 1, bias=bias)
        self.reduce_chan_level_2 = nn.Conv2d(d3 + 3, d3, 1, bias=bias)
        self.reduce_chan_level_3 = nn.Conv2d(d4 + 3, d4, 1, bias=bias)
        self.output = nn.Conv2d(d2, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        image = reflect_pad_to(x, FACTOR)
        enc1 = self.encoder_level1(self.patch_embed(image))
        skip1 = self.skip_patch_embed1(image)
        enc2 = self.encoder_level2(self.reduce_chan_level_1(torch.cat([self.down1_2(enc1), skip1], 1)))
        skip2 = self.skip_patch_embed2(skip1)
        enc3 = self.encoder_level3(self.reduce_chan_level_2(torch.cat([self.down2_3(enc2), skip2], 1)))
        skip3 = self.skip_patch_embed3(skip2)
        latent = self.latent(self.reduce_chan_level_3(torch.cat([self.down3_4(enc3), skip3], 1)))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.refinement(self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1)))
        return (self.output(dec1) + image)[..., :h, :w]


LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
BLOCK_WEIGHTS = {
    "attn_g.temperature",
    "attn_g.qkv.weight",
    "attn_g.qkv_dwconv.weight",
    "attn_g.project_out.weight",
    "ffn.project_in.weight",
    "ffn.dwconv_5.weight",
    "ffn.dwconv_dilated2_1.weight",
    "ffn.project_out.weight",
}


BLOCK_BIASES = {key.replace(".weight", ".bias") for key in BLOCK_WEIGHTS if key.endswith(".weight")}


def detect(state_dict: StateDict) -> bool:
    """The official layout: pyramid skips, and histogram blocks holding exactly DHSA and DGFF weights."""
    if not all(
        key in state_dict
        for key in (
            "patch_embed.proj.weight",
            "skip_patch_embed3.proj.2.weight",
            "reduce_chan_level_3.weight",
        )
    ):
        return False
    prefix = "encoder_level1.0."
    block = {key[len(prefix) :] for key in state_dict if key.startswith(prefix)}
    return block - BLOCK_BIASES == BLOCK_WEIGHTS


def expansion_factor(hidden: dict[int, int]) -> float:
    """An `ffn_expansion_factor` f with int(width * f) equal to each level's stored hidden width: the
    released 2.667 when it fits, else the shortest decimal in the interval every level allows."""
    fits = lambda f: all(int(width * f) == h for width, h in hidden.items())  # noqa: E731
    if fits(RELEASED_EXPANSION):
        return RELEASED_EXPANSION
    low = max(h / width for width, h in hidden.items())
    high = min((h + 1) / width for width, h in hidden.items())
    for digits in range(1, 8):
        candidate = math.ceil(low * 10**digits) / 10**digits
        if candidate < high and fits(candidate):
            return candidate
    raise MissingHyperParameter(f"no ffn_expansion_factor gives the feed-forward widths {hidden}")


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    if scale not in (None, 1):
        raise MissingHyperParameter(f"Histoformer restores at scale 1, not x{scale}")
    dim, inp_channels = shape(state_dict, "patch_embed.proj.weight")[:2]
    num_blocks = tuple(count_prefixed(state_dict, f"{name}.") for name in LEVELS)
    if 0 in num_blocks:
        raise MissingHyperParameter(f"a level without blocks ({num_blocks}) does not tell its heads")
    heads = tuple(shape(state_dict, f"{name}.0.attn_g.temperature")[0] for name in LEVELS)
    hidden = {
        dim * 2**i: shape(state_dict, f"{name}.0.ffn.project_in.weight")[0] // 2
        for i, name in enumerate(LEVELS)
    }
    return {
        "inp_channels": inp_channels,
        "out_channels": shape(state_dict, "output.weight")[0],
        "dim": dim,
        "num_blocks": num_blocks,
        "num_refinement_blocks": count_prefixed(state_dict, "refinement."),
        "heads": heads,
        "ffn_expansion_factor": expansion_factor(hidden),
        "bias": "output.bias" in state_dict,
        "LayerNorm_type": "WithBias",
        "scale": 1,
    }


FAMILY = Family(
    name="Histoformer",
    build=Histoformer,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=FACTOR,
    scales=(1,),
    supports_fp16=False,
    supports_bf16=False,  # value sorts decide the attention bins: reduced precision reorders them
    presets={
        "Histoformer": {
            "dim": 36,
            "num_blocks": (4, 4, 6, 8),
            "num_refinement_blocks": 4,
            "heads": (1, 2, 4, 8),
            "ffn_expansion_factor": RELEASED_EXPANSION,
            "bias": False,
        }
    },
    # The norms hold no weights, so their kind is not in a checkpoint; every release uses 'WithBias'.
    unstored=("LayerNorm_type",),
)
