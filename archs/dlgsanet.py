"""DLGSANet, dynamic local and sparse global self-attention (Li et al., ICCV 2023), key-compatible with the
official weights.

Official code: NeonLeexiang/DLGSANet @0974b9a `basicsr/archs/dlgsanet_arch.py` (the released structure:
`buildblock_type: sparseedge`, GDFN feed-forwards, no body norm) and `dlgsanet_idynamicdwconv_util.py`.
Input and output are RGB in [0, 1]; any size (no windows to pad to).

Two parts differ in form, not in function, from the official code:
- The dynamic depth-wise convolution of the MHDLSA block is a CuPy CUDA kernel there (`_idynamic`): each
  output pixel is its own k×k filter, shared by a group of channels, applied to the zero-padded input.
  Here it is `kernels.dynamic_conv.dynamic_depthwise_conv`: tensor ops (k² shifted multiply-adds) that run
  on any device and export, and a compiled one-pass CPU kernel in fp32 inference.
- In eval mode the SparseGSA attention is computed, as officially (TLC, `tlc_flag`), over overlapping
  `tlc_kernel`² crops laid out by the official `grids` rule and averaged back; here the crops' positions
  are computed with tensor ops (`tlc_windows`) and gathered/scattered with index ops, any batch size, so an
  exported graph lays out the crops for whatever size it is given. Training mode attends over the whole map.
CPU inference (fp32, no autograd) takes a faster path with the same function: the feed-forward's GELU gate
and residual fused into its convolutions (archs.fused_conv), LayerNorm in place, and the TLC crops cut and
added back as slices, in the same order as the gathered form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import DIV2K_RGB_MEAN, GatedFeedForward, UpsampleOneStep, Upsampler
from archs.fused_conv import fusable
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels.dynamic_conv import dynamic_depthwise_conv
from kernels.tracing import is_exporting, is_graph_capture

UPSAMPLERS = ("pixelshuffledirect", "pixelshuffle")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}  # SparseGSA's (relu released)
TLC_KERNELS = {2: 96, 3: 72, 4: 48}  # the official test options' tlc_kernel per scale
NUM_FEAT = 64  # the 'pixelshuffle' upsampler's width, fixed officially


def tlc_windows(size: int | torch.Tensor, kernel: int, device: torch.device | None = None) -> torch.Tensor:
    """(n, k) indices of the official TLC crops along one axis of length `size`: k = min(size, kernel),
    n = ceil(size / k), starts i·step with step = ceil((size - k) / (n - 1)), the last one moved to size - k.

    Tensor arithmetic throughout, so a traced graph computes the layout from the runtime size."""
    size = torch.as_tensor(size, device=device)
    k = torch.clamp(size, max=kernel)
    n = (size - 1) // k + 1
    step = (size - k + n - 2) // torch.clamp(n - 1, min=1)
    starts = torch.clamp(torch.arange(n, device=device) * step, max=size - k)
    return starts[:, None] + torch.arange(k, device=device)[None, :]


def _coverage(windows: torch.Tensor, size: int | torch.Tensor) -> torch.Tensor:
    """How many of the crops `windows` (n, k) cover each position 0..size-1."""
    positions = torch.arange(size, device=windows.device)
    inside = (positions[None] >= windows[:, :1]) & (positions[None] <= windows[:, -1:])
    return inside.sum(0)


class LayerNorm(nn.Module):
    """The official 'WithBias' LayerNorm over the channels of an (N, C, H, W) map, eps 1e-5 (`body.*`)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Module()
        self.body.weight = nn.Parameter(torch.ones(dim))
        self.body.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.body.weight[:, None, None], self.body.bias[:, None, None]
        if fusable(x):  # inference: the same operations, in place on one new tensor
            centred = x - x.mean(1, keepdim=True)
            var = centred.square().mean(1, keepdim=True)
            return centred.div_(var.add_(1e-5).sqrt_()).mul_(weight).add_(bias)
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        x = (x - mu) / torch.sqrt(var + 1e-5)
        return x * weight + bias


class IDynamicDWConv(nn.Module):
    """The hyper-network predicting per-pixel k×k filters (1×1 to dim/4, k×k depth-wise, 1×1 to k²·groups),
    applied by `dynamic_depthwise_conv`; groups = dim / heads (the official `group_channels` is the heads)."""

    def __init__(self, dim: int, kernel_size: int, heads: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.groups = dim // heads
        reduced = dim // 4
        self.conv1 = nn.Sequential(
            nn.Conv2d(dim, reduced, 1),
            nn.Conv2d(reduced, reduced, kernel_size, padding=kernel_size // 2, groups=reduced),
        )
        self.conv2 = nn.Sequential(nn.Conv2d(reduced, kernel_size**2 * self.groups, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.conv2(self.conv1(x))
        b, _, h, w = weight.shape
        k = self.kernel_size
        return dynamic_depthwise_conv(x, weight.reshape(b, self.groups, k, k, h, w))


class IDynamicDWConvBlock(nn.Module):
    """MHDLSA: 1×1, the dynamic depth-wise convolution, 1×1 (keys `conv0`, `conv`, `conv1`)."""

    def __init__(self, dim: int, window_size: int, heads: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 1, bias=False)
        self.conv = IDynamicDWConv(dim, window_size, heads)
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.conv(self.conv0(x)))


class IDynamicLayerBlock(nn.Module):
    """Pre-norm MHDLSA then pre-norm GDFN, each with a residual."""

    def __init__(self, dim: int, window_size: int, heads: int, expansion: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.IDynamicDWConv = IDynamicDWConvBlock(dim, window_size, heads)
        self.norm2 = LayerNorm(dim)
        self.IDynamic_ffn = GatedFeedForward(dim, int(dim * expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.IDynamicDWConv(self.norm1(x)) + x
        return self.IDynamic_ffn(self.norm2(x), residual=x)


class SparseAttention(nn.Module):
    """Transposed (channel) attention over the pixels, q and k L2-normalised, a learnt temperature per head,
    then ReLU (SparseGSA; GELU and sigmoid were ablations). Eval mode attends within TLC crops."""

    def __init__(self, dim: int, heads: int, tlc_kernel: int, act: nn.Module, tlc: bool) -> None:
        super().__init__()
        self.heads = heads
        self.tlc_kernel = tlc_kernel
        self.tlc = tlc
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)
        self.act = act

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(N, 3C, L) → (N, C, L): attention among the C/heads channels of each head over the L pixels."""
        n, c3, _ = qkv.shape
        q, k, v = qkv.reshape(n, 3, self.heads, c3 // (3 * self.heads), -1).unbind(1)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * self.temperature
        return (self.act(attn) @ v).reshape(n, c3 // 3, -1)

    def _attend_in_crops(self, qkv: torch.Tensor) -> torch.Tensor:
        """The official TLC: attention within each crop, crop outputs summed back and divided by coverage."""
        b, c3, h, w = qkv.shape
        rows = tlc_windows(h, self.tlc_kernel, qkv.device)
        cols = tlc_windows(w, self.tlc_kernel, qkv.device)
        if not is_graph_capture():
            return self._attend_in_sliced_crops(qkv, rows[:, 0].tolist(), cols[:, 0].tolist(), rows, cols)
        (nr, kh), (nc, kw) = rows.shape, cols.shape
        crops = qkv.index_select(2, rows.flatten()).index_select(3, cols.flatten())
        crops = crops.reshape(b, c3, nr, kh, nc, kw).permute(0, 2, 4, 1, 3, 5).reshape(b * nr * nc, c3, -1)
        out = self._attend(crops).reshape(b, nr, nc, c3 // 3, kh, kw).permute(0, 3, 1, 4, 2, 5)
        target = (rows.flatten()[:, None] * w + cols.flatten()[None, :]).flatten()
        out = out.reshape(b, c3 // 3, -1)
        summed = torch.zeros_like(qkv[:, : c3 // 3].flatten(2))
        summed = summed.scatter_add(2, target.expand(b, c3 // 3, -1), out).reshape(b, c3 // 3, h, w)
        coverage = _coverage(rows, h)[:, None] * _coverage(cols, w)[None, :]
        return summed / coverage.to(summed.dtype)

    def _attend_in_sliced_crops(
        self, qkv: torch.Tensor, row_starts: list[int], col_starts: list[int], rows: torch.Tensor,
        cols: torch.Tensor,
    ) -> torch.Tensor:
        """`_attend_in_crops` with the crops cut and added back as slices (sizes known, not traced): one copy
        in, where index_select needs three, and the same sums in the same order as its scatter_add."""
        b, c3, h, w = qkv.shape
        kh, kw = rows.shape[1], cols.shape[1]
        crops = torch.stack([qkv[..., r : r + kh, c : c + kw] for r in row_starts for c in col_starts], 1)
        out = self._attend(crops.reshape(-1, c3, kh * kw)).reshape(b, -1, c3 // 3, kh, kw)
        summed = qkv.new_zeros(b, c3 // 3, h, w)
        for index, (r, c) in enumerate((r, c) for r in row_starts for c in col_starts):
            summed[..., r : r + kh, c : c + kw] += out[:, index]
        coverage = _coverage(rows, h)[:, None] * _coverage(cols, w)[None, :]
        return summed / coverage.to(summed.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv_dwconv(self.qkv(x))
        whole = not is_exporting() and h <= self.tlc_kernel and w <= self.tlc_kernel  # one crop: the map
        if self.training or not self.tlc or whole:
            out = self._attend(qkv.flatten(2)).reshape(b, c, h, w)
        else:
            out = self._attend_in_crops(qkv)
        return self.project_out(out)


class SparseAttentionLayerBlock(nn.Module):
    """Pre-norm SparseGSA then pre-norm GDFN, each with a residual (keys `norm3`, `restormer_attn`, ...)."""

    def __init__(
        self, dim: int, heads: int, expansion: float, tlc_kernel: int, act: nn.Module, tlc: bool
    ) -> None:
        super().__init__()
        self.norm3 = LayerNorm(dim)
        self.restormer_attn = SparseAttention(dim, heads, tlc_kernel, act, tlc)
        self.norm4 = LayerNorm(dim)
        self.restormer_ffn = GatedFeedForward(dim, int(dim * expansion))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.restormer_attn(self.norm3(x)) + x
        return self.restormer_ffn(self.norm4(x), residual=x)


class BuildBlock(nn.Module):
    """A residual group (RHDTG): `blocks` × (MHDLSA block, SparseGSA block), a 3×3 conv, a residual."""

    def __init__(self, dim: int, blocks: int, attention: dict, dynamic: dict) -> None:
        super().__init__()
        body: list[nn.Module] = []
        for _ in range(blocks):
            body += [IDynamicLayerBlock(dim, **dynamic), SparseAttentionLayerBlock(dim, **attention)]
        self.body = nn.Sequential(*body, nn.Conv2d(dim, dim, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class OverlapPatchEmbed(nn.Module):
    """A 3×3 convolution without bias (key `proj`)."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class DLGSANet(nn.Module):
    """DLGSANet: `groups` residual groups of `blocks` hybrid blocks at width `dim`, then an upsampler.

    The official option names are accepted; `buildblock_type`, `idynamic_ffn_type`, `restormer_ffn_type`,
    `idynamic` and `body_norm` only at the released values (sparseedge, GDFN, GDFN, True, False), the only
    structure implemented.
    `tlc_kernel` (no checkpoint holds it) is the official test options' value for the scale unless given.
    """

    def __init__(
        self,
        in_chans: int = 3,
        dim: int = 90,
        groups: int = 6,
        blocks: int = 4,
        buildblock_type: str = "sparseedge",
        window_size: int = 7,
        idynamic_num_heads: int = 6,
        idynamic_ffn_type: str = "GDFN",
        idynamic_ffn_expansion_factor: float = 2.0,
        idynamic: bool = True,
        restormer_num_heads: int = 6,
        restormer_ffn_type: str = "GDFN",
        restormer_ffn_expansion_factor: float = 2.0,
        tlc_flag: bool = True,
        tlc_kernel: int | None = None,
        activation: str = "relu",
        scale: int = 4,
        img_range: float = 1.0,
        upsampler: str = "pixelshuffledirect",
        body_norm: bool = False,
    ) -> None:
        super().__init__()
        _check(locals())
        self.scale = scale
        self.img_range = img_range
        self.upsampler = upsampler
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean).view(1, in_chans, 1, 1), persistent=False)
        self.overlap_embed = nn.Sequential(OverlapPatchEmbed(in_chans, dim))
        attention = {
            "heads": restormer_num_heads,
            "expansion": restormer_ffn_expansion_factor,
            "tlc_kernel": TLC_KERNELS.get(scale, 48) if tlc_kernel is None else tlc_kernel,
            "act": ACTIVATIONS[activation](),
            "tlc": tlc_flag,
        }
        dynamic = {
            "window_size": window_size,
            "heads": idynamic_num_heads,
            "expansion": idynamic_ffn_expansion_factor,
        }
        self.deep_feature_extraction = nn.Sequential(
            *(BuildBlock(dim, blocks, attention, dynamic) for _ in range(groups)),
            nn.Conv2d(dim, dim, 3, padding=1),
        )
        if upsampler == "pixelshuffledirect":
            self.upsample = UpsampleOneStep(scale, dim, in_chans)
        else:
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(dim, NUM_FEAT, 3, padding=1), nn.LeakyReLU())
            self.upsample = Upsampler(scale, NUM_FEAT)
            self.conv_last = nn.Conv2d(NUM_FEAT, in_chans, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        x = self.overlap_embed((x - mean) * self.img_range)
        x = self.deep_feature_extraction(x) + x
        if self.upsampler == "pixelshuffledirect":
            x = self.upsample(x)
        else:
            x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        return x / self.img_range + mean


def _check(args: dict) -> None:
    """ValueError for settings outside the implemented (released) structure."""
    fixed = {
        "buildblock_type": "sparseedge",
        "idynamic_ffn_type": "GDFN",
        "restormer_ffn_type": "GDFN",
        "idynamic": True,
        "body_norm": False,
    }
    for key, value in fixed.items():
        if args[key] != value:
            raise ValueError(f"{key} must be {value!r} (the released structure), not {args[key]!r}")
    if args["activation"] not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, not {args['activation']!r}")
    if args["upsampler"] not in UPSAMPLERS:
        raise ValueError(f"upsampler must be one of {UPSAMPLERS}, not {args['upsampler']!r}")
    if args["window_size"] % 2 == 0:
        raise ValueError(f"window_size must be odd, not {args['window_size']}")
    for key in ("idynamic_num_heads", "restormer_num_heads"):
        if args["dim"] % args[key]:
            raise ValueError(f"{key} {args[key]} must divide dim {args['dim']}")


_IDYN = "deep_feature_extraction.0.body.0.IDynamicDWConv.conv."
_ATTN = "deep_feature_extraction.0.body.1.restormer_attn."


def detect(state_dict: StateDict) -> bool:
    return (
        "overlap_embed.0.proj.weight" in state_dict
        and f"{_IDYN}conv2.0.weight" in state_dict
        and f"{_ATTN}temperature" in state_dict
    )


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    """Everything from shapes and keys but `tlc_kernel` (the official test options' 96/72/48 for x2/x3/x4),
    `activation` (every released model: ReLU) and `img_range` (1)."""
    dim, in_chans = shape(state_dict, "overlap_embed.0.proj.weight")[:2]
    groups = count_prefixed(state_dict, "deep_feature_extraction.") - 1
    blocks = (count_prefixed(state_dict, "deep_feature_extraction.0.body.") - 1) // 2
    window_size = shape(state_dict, f"{_IDYN}conv1.1.weight")[-1]
    dynamic_groups = shape(state_dict, f"{_IDYN}conv2.0.weight")[0] // window_size**2
    block = "deep_feature_extraction.0.body."
    ffns = (f"{block}0.IDynamic_ffn.project_in.weight", f"{block}1.restormer_ffn.project_in.weight")
    for key in ffns:
        if key not in state_dict:
            raise MissingHyperParameter(f"{key} is missing: only GDFN feed-forwards are supported")
    if "conv_before_upsample.0.weight" in state_dict:
        upsampler = "pixelshuffle"
        found = 1
        for index in (0, 2):
            key = f"upsample.{index}.weight"
            if key in state_dict:
                found *= math.isqrt(shape(state_dict, key)[0] // NUM_FEAT)
    elif "upsample.0.weight" in state_dict:
        upsampler = "pixelshuffledirect"
        found = math.isqrt(shape(state_dict, "upsample.0.weight")[0] // in_chans)
    else:
        raise MissingHyperParameter("DLGSANet weights without an upsampler (scale 1) are not supported")
    if found not in TLC_KERNELS:
        raise MissingHyperParameter(f"cannot tell the scale: the upsampler gives x{found}, not x2, x3 or x4")
    if scale not in (None, found):
        raise MissingHyperParameter(f"these DLGSANet weights are x{found}, not x{scale}")
    return {
        "in_chans": in_chans,
        "dim": dim,
        "groups": groups,
        "blocks": blocks,
        "window_size": window_size,
        "idynamic_num_heads": dim // dynamic_groups,
        "idynamic_ffn_expansion_factor": shape(state_dict, ffns[0])[0] / 2 / dim,
        "restormer_num_heads": shape(state_dict, f"{_ATTN}temperature")[0],
        "restormer_ffn_expansion_factor": shape(state_dict, ffns[1])[0] / 2 / dim,
        "tlc_kernel": TLC_KERNELS[found],
        "activation": "relu",
        "scale": found,
        "img_range": 1.0,
        "upsampler": upsampler,
    }


_RELEASED = {
    "window_size": 7,
    "idynamic_num_heads": 6,
    "restormer_num_heads": 6,
    "upsampler": "pixelshuffledirect",
}

FAMILY = Family(
    name="DLGSANet",
    build=DLGSANet,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=1,
    scales=(2, 3, 4),
    supports_fp16=False,
    supports_bf16=True,
    presets={
        "DLGSANet": {"dim": 90, "groups": 6, "blocks": 4, **_RELEASED},
        "DLGSANet-light": {"dim": 48, "groups": 4, "blocks": 3, **_RELEASED},
        "DLGSANet-tiny": {"dim": 48, "groups": 3, "blocks": 3, **_RELEASED},
    },
    unstored=("tlc_kernel", "activation", "img_range"),
)
