"""CAMixerSR, content-aware mixing of window attention and convolution (Wang et al., CVPR 2024).

Official code: icandle/CAMixerSR `codes/basicsr/archs/CAMixerSR_arch.py`; parameter names are its keys.

Routing. Each CAMixer block scores its 16×16 windows (`route.out_mask`). With `ratio` 1.0 (the default, the
paper's "Original" rows) every window is attended and no score is computed: the output is deterministic
and equals the official code's at ratio 1, whose window permutation does not change the result. With
`ratio` < 1 only the `keep` best-scoring windows of each image are attended (first `keep` of the official
descending argsort, ties included; the others take v·sa). With N windows per image:
- `stochastic=True`: as the official code, even in eval mode, `keep = min(int(N·r·2·ratio), N)` where r is
  the share of 'attend' in a hard `F.gumbel_softmax` sample over the whole batch, drawn from torch's global
  RNG in every block (call `torch.manual_seed` first for reproducible results; the same seed, shapes and
  dtype give the official code's output).
- `stochastic=False`: deterministic, `keep = min(round(N·E[r]·2·ratio), N)` with the draw's expected share
  E[r] = mean(sigmoid(score₀ − score₁)) over the batch: the official count's mean, rounded.
`ratio` is not stored in checkpoints; the official test options use 0.5. Below ratio 1 the window count
is read back as a Python int in eager mode; while exporting, every window is attended and the `keep` best are
selected with a rank mask built from tensors, which gives the same output and stays valid for any size.

The forward is the official inference path in train() mode too: the official training-time routing (a
straight-through Gumbel mask over all windows and the ratio loss) is not reproduced; train at ratio 1.0.
Input RGB in [0, 1]; it is reflect-padded to a multiple of 16 as officially (inputs too small to reflect,
where the official pad raises, are edge-replicated) and the output is cropped back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import DilatedConv2d, GatedFeedForward
from archs.fused_conv import fusable
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape
from kernels import window_attention, window_partition, window_reverse
from kernels.tracing import is_exporting

WINDOW = 16  # hard-coded in the official model (`window_sizes`)


class LayerNorm(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) map, eps 1e-6, written as the official one."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_exporting():  # one LayerNormalization: ONNX Runtime's ReduceMean over channels is slow
            return self.as_layer_norm(x)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]

    def as_layer_norm(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation as one F.layer_norm over a channels-last view: one pass, no temporaries
        (fastest on channels-last input); equal to `forward` up to rounding."""
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.weight.shape[0],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def window_coordinates(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, 2, H, W): each pixel's row and column position inside its window, in [-1, 1] (official
    `condition_wind`: float32 linspace, then the input's dtype)."""
    n, _, h, w = x.shape
    line = torch.linspace(-1, 1, window, device=x.device)
    grid = torch.stack(torch.meshgrid(line, line, indexing="ij")).to(x.dtype)
    return grid.unsqueeze(0).repeat(n, 1, h // window, w // window)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """x sampled at each pixel + flow (N, 2, H, W; x then y offsets in pixels): bilinear, border padding,
    align_corners=True, as BasicSR's `flow_warp`. The grid is float32 (or wider), also for bf16 inputs."""
    if is_exporting():
        return _gathered_warp(x, flow)
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, w)
    grid_x = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    grid_y = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=3)
    out = F.grid_sample(x.to(grid.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def _gathered_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """`flow_warp` as four gathers and their bilinear weights: what exports use, since ONNX Runtime's
    GridSample kernel took a fifth of CAMixerSR's time. Equal to grid_sample's result within float rounding
    (align_corners=True makes the grid exactly pixel + flow; border padding clamps it to the image)."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device, dtype=torch.float32).view(h, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float32).view(1, w)
    px = (cols + flow[:, 0].float()).clamp(0, w - 1)
    py = (rows + flow[:, 1].float()).clamp(0, h - 1)
    x0, y0 = px.floor(), py.floor()
    wx, wy = (px - x0)[:, None], (py - y0)[:, None]
    x0, y0 = x0.long(), y0.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def tap(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        index = (yi * w + xi).reshape(n, 1, h * w).expand(n, c, h * w)
        return flat.gather(2, index).reshape(n, c, h, w)

    top = tap(y0, x0) * (1 - wx) + tap(y0, x1) * wx
    bottom = tap(y1, x0) * (1 - wx) + tap(y1, x1) * wx
    return (top * (1 - wy) + bottom * wy).to(x.dtype)


def to_windows(x: torch.Tensor, window: int) -> torch.Tensor:
    """(N, C, H, W) → (N·nW, window², C), windows row-major per image (the official rearranges' order)."""
    return window_partition(x.permute(0, 2, 3, 1), window).flatten(1, 2)


def from_windows(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(N·nW, window², C) → (N, C, H, W), the inverse of `to_windows`."""
    return window_reverse(windows, window, h, w).permute(0, 3, 1, 2)


class PredictorLG(nn.Module):
    """The router: deformation offsets, channel and spatial gates, and per-window attention scores."""

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        cdim = dim + 4  # features, 2 global condition channels, 2 window coordinates
        self.window = window
        self.in_conv = nn.Sequential(nn.Conv2d(cdim, cdim // 4, 1), LayerNorm(cdim // 4), nn.LeakyReLU(0.1))
        self.out_offsets = nn.Sequential(
            nn.Conv2d(cdim // 4, cdim // 8, 1), nn.LeakyReLU(0.1), nn.Conv2d(cdim // 8, 2, 1)
        )
        self.out_mask = nn.Sequential(
            nn.Linear(window * window, window), nn.LeakyReLU(0.1), nn.Linear(window, 2), nn.Softmax(dim=-1)
        )
        self.out_CA = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cdim // 4, dim, 1), nn.Sigmoid())
        self.out_SA = nn.Sequential(nn.Conv2d(cdim // 4, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(features, offsets (N, 2, H, W) in ±8 px, channel gate (N, C, 1, 1), spatial gate (N, 1, H, W))."""
        x = self.in_conv(condition)
        offsets = self.out_offsets(x).tanh().mul(8.0)
        return x, offsets, self.out_CA(x), self.out_SA(x)

    def window_scores(self, features: torch.Tensor) -> torch.Tensor:
        """(N, nW, 2) softmax scores per window; column 0 is 'attend'."""
        pooled = to_windows(features.mean(1, keepdim=True), self.window)
        return self.out_mask(pooled.reshape(features.shape[0], -1, self.window * self.window))


class CAMixer(nn.Module):
    """Content-aware mixer: window attention (q = x, k = x + deformed x, v = 1x1 conv) on the routed windows,
    then dilated depthwise convolutions gated by the router's channel attention."""

    def __init__(self, dim: int, window: int = WINDOW, ratio: float = 1.0, stochastic: bool = False) -> None:
        super().__init__()
        self.window = window
        self.ratio = ratio
        self.stochastic = stochastic
        self.project_v = nn.Conv2d(dim, dim, 1)
        self.project_q = nn.Linear(dim, dim)
        self.project_k = nn.Linear(dim, dim)
        self.conv_sptial = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
            DilatedConv2d(dim, dim, 3, padding=2, groups=dim, dilation=2),
        )
        self.project_out = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.route = PredictorLG(dim, window)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W); condition (N, 4, H, W): the global condition and the window coordinates."""
        _, _, h, w = x.shape
        v = self.project_v(x)
        features, offsets, ca, sa = self.route(torch.cat([v, condition], dim=1))
        k = x + flow_warp(x, offsets)
        q_w, k_w, v_w = (to_windows(t, self.window) for t in (x, k, v))
        if self.ratio >= 1:
            out = self._attend(q_w, k_w, v_w)
        elif is_exporting():
            chosen = self._chosen_mask(self.route.window_scores(features))
            out = torch.where(chosen, self._attend(q_w, k_w, v_w), to_windows(v * sa, self.window))
        else:
            chosen = self._chosen_windows(self.route.window_scores(features))
            out = to_windows(v * sa, self.window)
            if chosen.numel():
                out = out.index_copy(0, chosen, self._attend(q_w[chosen], k_w[chosen], v_w[chosen]))
        out = from_windows(out, self.window, h, w)
        out = self.act(self.conv_sptial(out)) * ca + out
        return self.project_out(out)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One-head attention of dim C inside each window, unscaled as officially: (M, window², C) each."""
        q, k, v = self.project_q(q).unsqueeze(1), self.project_k(k).unsqueeze(1), v.unsqueeze(1)
        return window_attention(q, k, v, scale=1.0).squeeze(1)

    def _chosen_windows(self, scores: torch.Tensor) -> torch.Tensor:
        """Rows (into N·nW) of the windows to attend: the `keep` best-scoring of each image (module doc)."""
        n, windows, _ = scores.shape
        if self.stochastic:
            share = F.gumbel_softmax(scores, hard=True, dim=2)[:, :, 0:1].mean(dim=(0, 1))
            keep = int(windows * share * 2 * self.ratio)
        else:
            expected = torch.sigmoid(scores[..., 0] - scores[..., 1]).mean()
            keep = round(float(windows * expected * 2 * self.ratio))
        keep = min(keep, windows)
        best = scores[..., 0].argsort(dim=1, descending=True)[:, :keep]
        return (best + windows * torch.arange(n, device=scores.device).view(n, 1)).flatten()


    def _chosen_mask(self, scores: torch.Tensor) -> torch.Tensor:
        """The deterministic choice of `_chosen_windows` as a (N·nW, 1, 1) mask, from tensor ops only."""
        if self.stochastic:
            raise RuntimeError("CAMixerSR exports only in deterministic mode (stochastic=False)")
        windows = torch.ones_like(scores[0, :, 0]).sum()  # the window count as a traced tensor
        expected = torch.sigmoid(scores[..., 0] - scores[..., 1]).mean()
        keep = torch.minimum(torch.round(windows * expected * 2 * self.ratio), windows)
        rank = scores[..., 0].argsort(dim=1, descending=True).argsort(dim=1)
        return (rank < keep).flatten().view(-1, 1, 1)


class Block(nn.Module):
    """Post-norm block: x = norm1(x + mixer(x)); x = norm2(x + ffn(x))."""

    def __init__(self, n_feats: int, window: int, ratio: float, stochastic: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm(n_feats)
        self.mixer = CAMixer(n_feats, window, ratio, stochastic)
        self.norm2 = LayerNorm(n_feats)
        self.ffn = GatedFeedForward(n_feats, n_feats)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if fusable(x):  # inference: one F.layer_norm per norm, the feed-forward's residual fused in
            x = self.norm1.as_layer_norm(x + self.mixer(x, condition))
            return self.norm2.as_layer_norm(self.ffn(x, residual=x))
        x = self.norm1(x + self.mixer(x, condition))
        return self.norm2(x + self.ffn(x))


class Group(nn.Module):
    """Blocks closed by a 1x1 convolution, with a residual connection around them."""

    def __init__(self, n_feats: int, n_block: int, window: int, ratio: float, stochastic: bool) -> None:
        super().__init__()
        self.body = nn.ModuleList(Block(n_feats, window, ratio, stochastic) for _ in range(n_block))
        self.body_tail = nn.Conv2d(n_feats, n_feats, 1)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        shortcut = x
        for block in self.body:
            x = block(x, condition)
        return self.body_tail(x) + shortcut


def pad_to_window(x: torch.Tensor, window: int) -> torch.Tensor:
    """Pad bottom/right to a multiple of `window`: reflect as the official `check_image_size`, or replicate
    where the input is too small to reflect (the official pad raises there)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (window - h % window) % window, (window - w % window) % window
    mode = "reflect" if is_exporting() or (pad_h < h and pad_w < w) else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class CAMixerSR(nn.Module):
    """CAMixerSR: head conv, global predictor, `n_group` groups of `n_block[g]` blocks, 3x3 conv, residual,
    pixel-shuffle tail. `ratio` and `stochastic` set the window routing (module docstring)."""

    def __init__(
        self,
        n_block: Sequence[int] = (4, 4, 6, 6),
        n_group: int = 4,
        n_colors: int = 3,
        n_feats: int = 60,
        scale: int = 4,
        ratio: float = 1.0,
        stochastic: bool = False,
    ) -> None:
        super().__init__()
        if len(n_block) < n_group:
            raise ValueError(f"n_block {list(n_block)} lists fewer than n_group={n_group} groups")
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], not {ratio}")
        self.scale = scale
        self.window = WINDOW
        self.head = nn.Conv2d(n_colors, n_feats, 3, 1, 1)
        self.global_predictor = nn.Sequential(
            nn.Conv2d(n_feats, 8, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 2, 3, 1, 1), nn.LeakyReLU(0.1)
        )
        self.body = nn.ModuleList(
            Group(n_feats, n_block[g], WINDOW, ratio, stochastic) for g in range(n_group)
        )
        self.body_tail = nn.Conv2d(n_feats, n_feats, 3, 1, 1)
        self.tail = nn.Sequential(
            nn.Conv2d(n_feats, n_colors * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.head(pad_to_window(x, self.window))
        condition = torch.cat([self.global_predictor(x), window_coordinates(x, self.window)], dim=1)
        shortcut = x
        for group in self.body:
            x = group(x, condition)
        x = self.body_tail(x) + shortcut
        return self.tail(x)[..., : h * self.scale, : w * self.scale]


def detect(state_dict: StateDict) -> bool:
    return all(
        key in state_dict
        for key in ("head.weight", "global_predictor.0.weight", "body.0.body.0.mixer.route.out_mask.0.weight",
                    "body.0.body.0.mixer.project_q.weight", "tail.0.weight")
    )


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    n_feats, n_colors = shape(state_dict, "head.weight")[:2]
    n_group = count_prefixed(state_dict, "body.")
    n_block = [count_prefixed(state_dict, f"body.{g}.body.") for g in range(n_group)]
    out_channels = shape(state_dict, "tail.0.weight")[0]
    found = math.isqrt(out_channels // n_colors)
    if found < 1 or found * found * n_colors != out_channels:
        raise MissingHyperParameter(
            f"cannot tell the scale: tail.0.weight has {out_channels} output channels, not {n_colors}·scale²"
        )
    if scale is not None and scale != found:
        raise MissingHyperParameter(f"these CAMixerSR weights are x{found}, not x{scale}")
    return {"n_block": n_block, "n_group": n_group, "n_colors": n_colors, "n_feats": n_feats, "scale": found}


FAMILY = Family(
    name="CAMixerSR",
    build=CAMixerSR,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=WINDOW,
    scales=(1, 2, 3, 4),
    supports_fp16=False,
    supports_bf16=True,
    channels_last=True,
    presets={
        # large-image models (tested at ratio 1.0 and 0.5) and the lightweight model (official ratio 0.5)
        "CAMixerSR-S": {"n_block": (4, 4, 6, 6), "n_group": 4, "n_feats": 36},
        "CAMixerSR-M": {"n_block": (4, 4, 6, 6), "n_group": 4, "n_feats": 48},
        "CAMixerSR-B": {"n_block": (4, 4, 6, 6), "n_group": 4, "n_feats": 60},
        "CAMixerSR-light": {"n_block": (4, 4, 6, 6), "n_group": 4, "n_feats": 60, "ratio": 0.5},
    },
)
