"""HOGformer, all-in-one image restoration guided by histograms of oriented gradients (Wu et al., AAAI 2026),
key-compatible with the official weights; scale 1, RGB in [0, 1].

Official code: Fire-friend/HOGformer `settingI/basicsr/models/archs/hogformer_arch.py` (the same network as
`settingIII&IV/net/model.py`). A Restormer-style U-Net whose blocks are dynamic HOG-aware self-attention
(DHOGSA: pixels sorted by gradient statistics, then attention over channel groups of the sorted sequence) and
the dynamic interaction feed-forward (DIFF). The network needs sides divisible by 8; like the official test
script, `forward` reflect-pads to a multiple of 16 and crops the result.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import DilatedConv2d, pixel_shuffle, pixel_unshuffle, reflect_pad_to
from archs.histoformer import Downsample, PatchEmbed, SkipPatchEmbed, Upsample
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels.sort import sort

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))
PAD_TO = 16  # the official test script's `factor`
LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
# The block lists that use heads[i], i.e. whose first block's temperature tells it.
HEAD_OWNERS = (
    ("encoder_level1", "decoder_level1", "refinement"),
    ("encoder_level2", "decoder_level2"),
    ("encoder_level3", "decoder_level3"),
    ("latent",),
)


def layer_norm(x: torch.Tensor, bias_free: bool) -> torch.Tensor:
    """The official LayerNorm over channels of (B, C, H, W), without affine parameters (there are none)."""
    var = x.var(1, keepdim=True, unbiased=False)
    if bias_free:
        return x / torch.sqrt(var + 1e-5)
    return (x - x.mean(1, keepdim=True)) / torch.sqrt(var + 1e-5)


def _pad_amount(length: int, multiple: int) -> int:
    return (multiple - length % multiple) % multiple


def to_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W), zero-padded at the bottom/right to multiples of `p` -> (B, nH*nW, C, p*p)."""
    b, c, h, w = x.shape
    x = F.pad(x, (0, _pad_amount(w, p), 0, _pad_amount(h, p)))
    n_h, n_w = x.shape[2] // p, x.shape[3] // p
    return x.reshape(b, c, n_h, p, n_w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, n_h * n_w, c, p * p)


def from_patches(patches: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `to_patches`, cropped back to (B, C, h, w)."""
    b, _, c, _ = patches.shape
    n_h, n_w = (h + _pad_amount(h, p)) // p, (w + _pad_amount(w, p)) // p
    x = patches.reshape(b, n_h, n_w, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, n_h * p, n_w * p)
    return x[:, :, :h, :w]


class DHOGSA(nn.Module):
    """Dynamic HOG-aware self-attention (official `Attention_DHOGSA`).

    Half of the channels are sorted inside 8x8 cells by orientation-bin-weighted gradient magnitude and get a
    projected, normalised 9-bin HOG of their cell added; then every pixel is sorted by the magnitude times
    normalised orientation of v's gradients, and two channel attentions (`softmax` with an extra 1 in the
    denominator) run on the sorted sequence cut into `num_heads` contiguous chunks and interleaved groups.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool, patch_size: int = 8, n_bins: int = 9) -> None:
        super().__init__()
        self.num_heads, self.patch_size, self.n_bins = num_heads, patch_size, n_bins
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 5, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 5, dim * 5, 3, padding=1, groups=dim * 5, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)
        self.bin_proj = nn.Conv2d(n_bins, dim // 2, 1, bias=bias)
        self.register_buffer("sobel_x", torch.tensor(SOBEL_X).reshape(1, 1, 3, 3).repeat(dim, 1, 1, 1))
        self.register_buffer("sobel_y", torch.tensor(SOBEL_Y).reshape(1, 1, 3, 3).repeat(dim, 1, 1, 1))

    def _gradients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel Sobel gradient magnitude (with 1e-6 inside the root) and orientation in [-pi, pi]."""
        c = x.shape[1]
        gx = F.conv2d(x, self.sobel_x[:c], padding=1, groups=c)
        gy = F.conv2d(x, self.sobel_y[:c], padding=1, groups=c)
        return torch.sqrt(gx**2 + gy**2 + 1e-6), torch.atan2(gy, gx)

    def _hog_sort(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cells of `x` sorted by bin-weighted magnitude, the sort indices and the normalised cell HOG map."""
        b, _, h, w = x.shape
        p = self.patch_size
        magnitude, orientation = self._gradients(x)
        bins = ((orientation + torch.pi) / (2 * torch.pi) * self.n_bins).long() % self.n_bins
        patches = to_patches(x, p)
        mag = to_patches(magnitude, p)
        ori = to_patches(bins.to(x.dtype), p)
        hist = torch.stack(
            [(mag * (ori == i).to(x.dtype)).mean(dim=(-1, -2)) for i in range(self.n_bins)], -1
        )
        hist = hist / (hist.sum(dim=-1, keepdim=True) + 1e-8)
        order = sort((mag * (ori + 1)).sum(dim=2, keepdim=True), -1)[1].expand_as(patches)
        n_h, n_w = (h + _pad_amount(h, p)) // p, (w + _pad_amount(w, p)) // p
        # Contiguous as the official map: the convolution of a strided view differs in the last bit, and the
        # sorts downstream turn last bits into swapped pixels.
        hog_map = hist.transpose(1, 2).reshape(b, self.n_bins, n_h, n_w).contiguous()
        return from_patches(torch.gather(patches, -1, order), p, h, w), order, hog_map

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, box: bool) -> torch.Tensor:
        """Channel attention on (B, C, L) sequences cut in `num_heads` chunks (box) or interleaved groups."""
        b, c, length = q.shape
        f = self.num_heads
        pad = _pad_amount(length, f)

        def split(t: torch.Tensor) -> torch.Tensor:
            t = F.pad(t, (0, pad))
            if box:  # 'b (head c) (factor hw) -> b head (c factor) hw'
                return t.reshape(b, f, c // f * f, -1)
            t = t.reshape(b, f, c // f, -1, f).transpose(-1, -2)  # 'b (head c) (hw factor) -> ...'
            return t.reshape(b, f, c // f * f, -1)

        q, k, v = F.normalize(split(q), dim=-1), F.normalize(split(k), dim=-1), split(v)
        attn = (q @ k.transpose(-2, -1) * self.temperature).exp()
        out = attn / (attn.sum(-1, keepdim=True) + 1) @ v
        if not box:
            out = out.reshape(b, f, c // f, f, -1).transpose(-1, -2)
        return out.reshape(b, c, -1)[:, :, :length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        half = c // 2
        x_half, cell_order, hog_map = self._hog_sort(x[:, :half])
        hog_map = F.interpolate(self.bin_proj(hog_map), size=(h, w), mode="bilinear", align_corners=False)
        x = torch.cat((x_half + hog_map, x[:, half:]), dim=1)

        q1, k1, q2, k2, v = self.qkv_dwconv(self.qkv(x)).chunk(5, dim=1)
        magnitude, orientation = self._gradients(v)
        key = (magnitude * ((orientation + torch.pi) / (2 * torch.pi))).reshape(b, c, -1).sum(dim=1)
        idx = sort(key, -1)[1].unsqueeze(1).expand(b, c, -1)
        q1, k1, q2, k2, v = (torch.gather(t.reshape(b, c, -1), 2, idx) for t in (q1, k1, q2, k2, v))
        out1 = self._attend(q1, k1, v, box=True)
        out2 = self._attend(q2, k2, v, box=False)
        out1 = out1.scatter(2, idx, out1).reshape(b, c, h, w)
        out2 = out2.scatter(2, idx, out2).reshape(b, c, h, w)
        out = self.project_out(out1 * out2)

        p = self.patch_size
        first = to_patches(out[:, :half], p)
        first = from_patches(first.scatter(-1, cell_order, first), p, h, w)
        return torch.cat((first, out[:, half:]), dim=1)


class ElementScale(nn.Module):
    """A learnable per-channel scale (official `ElementScale`)."""

    def __init__(self, channels: int, init_value: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(init_value * torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class DIFF(nn.Module):
    """Dynamic interaction feed-forward (official `FFN_DIFF`): 1x1 expansion, pixel shuffle to twice the size,
    a 5x5 and a dilated 3x3 depthwise branch gated by Mish, a feature decomposition, unshuffle and 1x1."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        quarter = hidden // 4
        self.sigma = ElementScale(quarter, 1e-5)
        self.decompose = nn.Conv2d(quarter, 1, 1)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv_5 = nn.Conv2d(quarter, quarter, 5, padding=2, groups=quarter, bias=bias)
        self.dwconv_dilated2_1 = DilatedConv2d(
            quarter, quarter, 3, padding=2, groups=quarter, bias=bias, dilation=2
        )
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = pixel_shuffle(self.project_in(x), 2).chunk(2, dim=1)
        x = F.mish(self.dwconv_dilated2_1(x2)) * self.dwconv_5(x1)
        x = x + self.sigma(x - F.gelu(self.decompose(x)))
        return self.project_out(pixel_unshuffle(x, 2))


class TransformerBlock(nn.Module):
    """x + DHOGSA(LN(x)), then + DIFF(LN(x)); the norms have no parameters."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, bias_free: bool
    ) -> None:
        super().__init__()
        self.bias_free = bias_free
        self.attn_g_spatial = DHOGSA(dim, num_heads, bias)
        self.ffn = DIFF(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_g_spatial(layer_norm(x, self.bias_free))
        return x + self.ffn(layer_norm(x, self.bias_free))


class HOGformer(nn.Module):
    """The official four-level HOGformer U-Net under the official argument and key names.

    `dual_pixel_task` only adds the official `skip_conv`, which the official forward never uses. `scale`
    exists for the toolkit's generic callers (training) and must be 1.
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 36,
        num_blocks: tuple[int, ...] | list[int] = (4, 4, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, ...] | list[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.667,
        bias: bool = False,
        LayerNorm_type: str = "WithBias",  # noqa: N803 - the official argument name
        dual_pixel_task: bool = False,
        scale: int = 1,
    ) -> None:
        super().__init__()
        if scale != 1:
            raise ValueError(f"HOGformer restores at scale 1, not x{scale}")
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"LayerNorm_type must be 'WithBias' or 'BiasFree', not {LayerNorm_type!r}")

        def blocks(n: int, channels: int, num_heads: int) -> nn.Sequential:
            bias_free = LayerNorm_type == "BiasFree"
            return nn.Sequential(
                *(
                    TransformerBlock(channels, num_heads, ffn_expansion_factor, bias, bias_free)
                    for _ in range(n)
                )
            )

        d = dim
        self.patch_embed = PatchEmbed(inp_channels, d)
        self.encoder_level1 = blocks(num_blocks[0], d, heads[0])
        self.down1_2 = Downsample(d)
        self.encoder_level2 = blocks(num_blocks[1], 2 * d, heads[1])
        self.down2_3 = Downsample(2 * d)
        self.encoder_level3 = blocks(num_blocks[2], 4 * d, heads[2])
        self.down3_4 = Downsample(4 * d)
        self.latent = blocks(num_blocks[3], 8 * d, heads[3])
        self.up4_3 = Upsample(8 * d)
        self.reduce_chan_level3 = nn.Conv2d(8 * d, 4 * d, 1, bias=bias)
        self.decoder_level3 = blocks(num_blocks[2], 4 * d, heads[2])
        self.up3_2 = Upsample(4 * d)
        self.reduce_chan_level2 = nn.Conv2d(4 * d, 2 * d, 1, bias=bias)
        self.decoder_level2 = blocks(num_blocks[1], 2 * d, heads[1])
        self.up2_1 = Upsample(2 * d)
        self.decoder_level1 = blocks(num_blocks[0], 2 * d, heads[0])
        self.refinement = blocks(num_refinement_blocks, 2 * d, heads[0])
        self.skip_patch_embed1 = SkipPatchEmbed(3)
        self.skip_patch_embed2 = SkipPatchEmbed(3)
        self.skip_patch_embed3 = SkipPatchEmbed(3)
        self.reduce_chan_level_1 = nn.Conv2d(2 * d + 3, 2 * d, 1, bias=bias)
        self.reduce_chan_level_2 = nn.Conv2d(4 * d + 3, 4 * d, 1, bias=bias)
        self.reduce_chan_level_3 = nn.Conv2d(8 * d + 3, 8 * d, 1, bias=bias)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(d, 2 * d, 1, bias=bias)
        self.output = nn.Conv2d(2 * d, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        inp = reflect_pad_to(x, PAD_TO)
        enc1 = self.encoder_level1(self.patch_embed(inp))
        skip1 = self.skip_patch_embed1(inp)
        enc2 = self.encoder_level2(self.reduce_chan_level_1(torch.cat([self.down1_2(enc1), skip1], 1)))
        skip2 = self.skip_patch_embed2(skip1)
        enc3 = self.encoder_level3(self.reduce_chan_level_2(torch.cat([self.down2_3(enc2), skip2], 1)))
        skip3 = self.skip_patch_embed3(skip2)
        latent = self.latent(self.reduce_chan_level_3(torch.cat([self.down3_4(enc3), skip3], 1)))
        dec3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], 1)))
        dec2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], 1)))
        dec1 = self.decoder_level1(torch.cat([self.up2_1(dec2), enc1], 1))
        out = self.output(self.refinement(dec1)) + inp
        return out[:, :, :h, :w]


def detect(state_dict: StateDict) -> bool:
    return (
        "patch_embed.proj.weight" in state_dict
        and "skip_patch_embed1.proj.1.weight" in state_dict
        and any(key.endswith(".attn_g_spatial.bin_proj.weight") for key in state_dict)
    )


def _expansion_factor(state_dict: StateDict) -> float:
    """A factor f with int(d * f) equal to every block's hidden width: the official 2.667 or 2.66 where they
    fit, else the shortest decimal that does (the network depends on f only through those widths)."""
    widths = {
        (shape(state_dict, key)[1], shape(state_dict, key)[0] // 2)
        for key in state_dict
        if key.endswith(".ffn.project_in.weight")
    }

    def fits(f: float) -> bool:
        return all(int(d * f) == hidden for d, hidden in widths)

    for f in (2.667, 2.66):
        if fits(f):
            return f
    low = max(hidden / d for d, hidden in widths)
    for digits in range(1, 8):
        f = math.ceil(low * 10**digits) / 10**digits
        if fits(f):
            return f
    raise ValueError(f"no FFN expansion factor gives the hidden widths {sorted(widths)}")


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    if scale not in (None, 1):
        raise MissingHyperParameter(f"HOGformer restores at scale 1, not x{scale}")
    dim, inp_channels = shape(state_dict, "patch_embed.proj.weight")[:2]
    num_blocks = [count_prefixed(state_dict, f"{level}.") for level in LEVELS]
    heads = []
    for i, owners in enumerate(HEAD_OWNERS):
        keys = [f"{owner}.0.attn_g_spatial.temperature" for owner in owners]
        keys = [key for key in keys if key in state_dict]
        # A level without blocks has no temperature, and its heads change nothing.
        heads.append(shape(state_dict, keys[0])[0] if keys else 2**i)
    return {
        "inp_channels": inp_channels,
        "out_channels": shape(state_dict, "output.weight")[0],
        "dim": dim,
        "num_blocks": num_blocks,
        "num_refinement_blocks": count_prefixed(state_dict, "refinement."),
        "heads": heads,
        "ffn_expansion_factor": _expansion_factor(state_dict),
        "bias": "output.bias" in state_dict,
        "dual_pixel_task": "skip_conv.weight" in state_dict,
        "scale": 1,
    }


FAMILY = Family(
    name="HOGformer",
    build=HOGformer,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=PAD_TO,
    scales=(1,),
    # Sort keys and orientation bins from half-precision gradients reorder pixels and move bins; the
    # attention's softmax has no max subtraction.
    supports_fp16=False,
    supports_bf16=False,
    presets={
        "HOGformer": {
            "dim": 36,
            "num_blocks": [4, 4, 6, 8],
            "num_refinement_blocks": 4,
            "heads": [1, 2, 4, 8],
            "ffn_expansion_factor": 2.667,
            "bias": False,
            "LayerNorm_type": "WithBias",
        }
    },
    # LayerNorm carries no parameters in either form: the official 'WithBias' unless metadata or a zoo entry
    # says 'BiasFree'.
    unstored=("LayerNorm_type",),
)
