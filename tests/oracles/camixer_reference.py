"""Functional transcription of the official CAMixerSR inference forward (float64 default), off a state dict.

Written from icandle/CAMixerSR `codes/basicsr/archs/CAMixerSR_arch.py` (eval mode, `tile=None`) and BasicSR's
`flow_warp`, step by step with the official rearranges, argsort routing and index select/fill; no `archs`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

Weights = dict[str, torch.Tensor]
WINDOW = 16


def official_draw(pred_score: torch.Tensor) -> torch.Tensor:
    """The official routing sample: a hard Gumbel-softmax of the window scores, 'attend' column."""
    return F.gumbel_softmax(pred_score, hard=True, dim=2)[:, :, 0:1]


def _conv(sd: Weights, name: str, x: torch.Tensor, padding: int = 0, dilation: int = 1,
          groups: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), padding=padding, dilation=dilation,
                    groups=groups)


def _linear(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _layer_norm(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + 1e-6)
    return sd[f"{name}.weight"][:, None, None] * x + sd[f"{name}.bias"][:, None, None]


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """BasicSR `flow_warp(x, flow (n,h,w,2), 'bilinear', 'border', align_corners=True)`."""
    _, _, h, w = x.size()
    grid_y, grid_x = torch.meshgrid(torch.arange(0, h).type_as(x), torch.arange(0, w).type_as(x),
                                    indexing="ij")
    grid = torch.stack((grid_x, grid_y), 2).float()
    vgrid = grid + flow
    vgrid_x = 2.0 * vgrid[:, :, :, 0] / max(w - 1, 1) - 1.0
    vgrid_y = 2.0 * vgrid[:, :, :, 1] / max(h - 1, 1) - 1.0
    vgrid_scaled = torch.stack((vgrid_x, vgrid_y), dim=3)
    return F.grid_sample(x, vgrid_scaled, mode="bilinear", padding_mode="border", align_corners=True)


def _batch_index_select(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    b, n, c = x.size()
    offset = torch.arange(b, dtype=torch.long, device=x.device).view(b, 1) * n
    return x.reshape(b * n, c)[(idx + offset).reshape(-1)].reshape(b, idx.size(1), c)


def _batch_index_fill(x, x1, x2, idx1, idx2) -> torch.Tensor:
    b, n, c = x.size()
    offset = torch.arange(b, dtype=torch.long, device=x.device).view(b, 1)
    x = x.reshape(b * n, c)
    x[(idx1 + offset * n).reshape(-1)] = x1.reshape(-1, c)
    x[(idx2 + offset * n).reshape(-1)] = x2.reshape(-1, c)
    return x.reshape(b, n, c)


def _predictor(sd: Weights, p: str, input_x: torch.Tensor, ratio: float, draw: Callable):
    x = _lrelu(_layer_norm(sd, f"{p}.in_conv.1", _conv(sd, f"{p}.in_conv.0", input_x)))
    offsets = _conv(sd, f"{p}.out_offsets.2", _lrelu(_conv(sd, f"{p}.out_offsets.0", x))).tanh().mul(8.0)
    ca = torch.sigmoid(_conv(sd, f"{p}.out_CA.1", x.mean(dim=(2, 3), keepdim=True)))
    sa = torch.sigmoid(_conv(sd, f"{p}.out_SA.0", x, padding=1))
    x = torch.mean(x, keepdim=True, dim=1)
    x = rearrange(x, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=WINDOW, dw=WINDOW)
    pred_score = torch.softmax(_linear(sd, f"{p}.out_mask.2", _lrelu(_linear(sd, f"{p}.out_mask.0", x))), -1)
    mask = draw(pred_score)
    score = pred_score[:, :, 0]
    _, n = score.shape
    r = torch.mean(mask, dim=(0, 1)) * 1.0
    keep = n if ratio == 1 else min(int(n * r * 2 * ratio), n)
    idx = torch.argsort(score, dim=1, descending=True)
    return [idx[:, :keep], idx[:, keep:]], offsets, ca, sa


def _mixer(sd: Weights, p: str, x: torch.Tensor, condition_global: torch.Tensor, ratio: float,
           draw: Callable) -> torch.Tensor:
    n, _, h, w = x.shape
    ws = WINDOW
    v = _conv(sd, f"{p}.project_v", x)
    line = torch.linspace(-1, 1, ws)
    condition_wind = torch.stack(torch.meshgrid(line, line, indexing="ij")).type_as(x).unsqueeze(0)
    condition_wind = condition_wind.repeat(n, 1, h // ws, w // ws)
    condition = torch.cat([v, condition_global, condition_wind], dim=1)
    (idx1, idx2), offsets, ca, sa = _predictor(sd, f"{p}.route", condition, ratio, draw)

    k = x + flow_warp(x, offsets.permute(0, 2, 3, 1))
    qk = torch.cat([x, k], dim=1)
    vs = v * sa
    v = rearrange(v, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
    vs = rearrange(vs, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
    qk = rearrange(qk, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
    kept = idx1.shape[1]
    v1, v2 = _batch_index_select(v, idx1), _batch_index_select(vs, idx2)
    qk1 = _batch_index_select(qk, idx1)
    v1 = rearrange(v1, "b n (dh dw c) -> (b n) (dh dw) c", n=kept, dh=ws, dw=ws)
    qk1 = rearrange(qk1, "b n (dh dw c) -> b (n dh dw) c", n=kept, dh=ws, dw=ws)
    q1, k1 = torch.chunk(qk1, 2, dim=2)
    q1, k1 = _linear(sd, f"{p}.project_q", q1), _linear(sd, f"{p}.project_k", k1)
    q1 = rearrange(q1, "b (n dh dw) c -> (b n) (dh dw) c", n=kept, dh=ws, dw=ws)
    k1 = rearrange(k1, "b (n dh dw) c -> (b n) (dh dw) c", n=kept, dh=ws, dw=ws)
    attn = (q1 @ k1.transpose(-2, -1)).softmax(dim=-1)
    f_attn = rearrange(attn @ v1, "(b n) (dh dw) c -> b n (dh dw c)", b=n, n=kept, dh=ws, dw=ws)
    out = _batch_index_fill(v.clone(), f_attn, v2.clone(), idx1, idx2)
    out = rearrange(out, "b (h w) (dh dw c) -> b c (h dh) (w dw)", h=h // ws, w=w // ws, dh=ws, dw=ws)
    c = out.shape[1]
    spatial = _conv(sd, f"{p}.conv_sptial.0", out, padding=1, groups=c)
    spatial = _conv(sd, f"{p}.conv_sptial.1", spatial, padding=2, dilation=2, groups=c)
    out = F.gelu(spatial) * ca + out
    return _conv(sd, f"{p}.project_out", out)


def _ffn(sd: Weights, p: str, x: torch.Tensor) -> torch.Tensor:
    x = _conv(sd, f"{p}.project_in", x)
    x1, x2 = _conv(sd, f"{p}.dwconv", x, padding=1, groups=x.shape[1]).chunk(2, dim=1)
    return _conv(sd, f"{p}.project_out", F.gelu(x1) * x2)


def _count(sd: Weights, prefix: str) -> int:
    heads = {k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)}
    return sum(head.isdigit() for head in heads)


def camixersr(sd: Weights, x: torch.Tensor, ratio: float = 1.0,
              draw: Callable[[torch.Tensor], torch.Tensor] = official_draw,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The official eval-mode forward in `dtype` (the routing draw consumes torch's RNG as officially)."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    x = x.to(dtype)
    h, w = x.shape[2:]
    scale = int(round((sd["tail.0.weight"].shape[0] / x.shape[1]) ** 0.5))
    x = F.pad(x, (0, (WINDOW - w % WINDOW) % WINDOW, 0, (WINDOW - h % WINDOW) % WINDOW), "reflect")
    x = _conv(sd, "head", x, padding=1)
    condition_global = _lrelu(_conv(sd, "global_predictor.2", _lrelu(_conv(sd, "global_predictor.0", x)),
                                    padding=1))
    shortcut = x.clone()
    for g in range(_count(sd, "body.")):
        group_in = x.clone()
        for b in range(_count(sd, f"body.{g}.body.")):
            p = f"body.{g}.body.{b}"
            x = _layer_norm(sd, f"{p}.norm1", x + _mixer(sd, f"{p}.mixer", x, condition_global, ratio, draw))
            x = _layer_norm(sd, f"{p}.norm2", x + _ffn(sd, f"{p}.ffn", x))
        x = _conv(sd, f"body.{g}.body_tail", x) + group_in
    x = _conv(sd, "body_tail", x, padding=1) + shortcut
    x = F.pixel_shuffle(_conv(sd, "tail.0", x, padding=1), scale)
    return x[:, :, 0 : h * scale, 0 : w * scale]
