"""Functional transcription of the official DLGSANet forward (float64 default), off a state dict.

Written from NeonLeexiang/DLGSANet @0974b9a: `basicsr/archs/dlgsanet_arch.py` (`DLGSANet.forward`,
`BuildBlock`, `IDynamicLayerBlock`, `SparseAttentionLayerBlock`, `SparseAttention` with the TLC
`grids` / `grids_inverse` loops as written, `FeedForward`, 'WithBias' LayerNorm through `to_3d`) and
`basicsr/archs/dlgsanet_idynamicdwconv_util.py` (`IDynamicDWConv.forward` and `idynamic_forward_kernel`, the
CUDA kernel's index arithmetic and bounds test transcribed as tensor gathers). No `archs`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def idynamic(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """`idynamic_forward_kernel` (stride 1, dilation 1): for each output (n, c, h, w), g = c / (C / G),
    value = Σ_{kh, kw} weight[((((n·G + g)·K + kh)·K + kw)·H_out + h)·W_out + w] · bottom[n, c, h_in, w_in]
    over h_in = h - pad + kh, w_in = w - pad + kw inside the input."""
    n, c, height, width = x.shape
    groups, kernel_h, kernel_w = weight.shape[1:4]
    out_h = height + 2 * padding - kernel_h + 1
    out_w = width + 2 * padding - kernel_w + 1
    flat_weight = weight.reshape(-1)
    nn_, cc, hh, ww = torch.meshgrid(
        torch.arange(n), torch.arange(c), torch.arange(out_h), torch.arange(out_w), indexing="ij"
    )
    g = cc // (c // groups)
    value = torch.zeros(n, c, out_h, out_w, dtype=x.dtype)
    for kh in range(kernel_h):
        for kw in range(kernel_w):
            h_in = -padding + hh + kh
            w_in = -padding + ww + kw
            valid = (h_in >= 0) & (h_in < height) & (w_in >= 0) & (w_in < width)
            offset_weight = ((((nn_ * groups + g) * kernel_h + kh) * kernel_w + kw) * out_h + hh) * out_w + ww
            bottom = x[nn_, cc, h_in.clamp(0, height - 1), w_in.clamp(0, width - 1)]
            value = value + torch.where(valid, flat_weight[offset_weight] * bottom, torch.zeros_like(bottom))
    return value


def _conv(sd: Weights, name: str, x: torch.Tensor, padding: int = 0, groups: int = 1) -> torch.Tensor:
    return F.conv2d(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), padding=padding, groups=groups)


def _layer_norm(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    """'WithBias' LayerNorm: b c h w → b (h w) c, over c (eps 1e-5, biased variance), back."""
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)
    mu = t.mean(-1, keepdim=True)
    sigma = t.var(-1, keepdim=True, unbiased=False)
    t = (t - mu) / torch.sqrt(sigma + 1e-5) * sd[f"{name}.body.weight"] + sd[f"{name}.body.bias"]
    return t.transpose(1, 2).reshape(b, c, h, w)


def _gdfn(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = _conv(sd, f"{name}.project_in", x)
    x1, x2 = _conv(sd, f"{name}.dwconv", x, padding=1, groups=x.shape[1]).chunk(2, dim=1)
    return _conv(sd, f"{name}.project_out", F.gelu(x1) * x2)


def _idynamic_block(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = _conv(sd, f"{name}.conv0", x)
    k = sd[f"{name}.conv.conv1.1.weight"].shape[-1]
    reduced = sd[f"{name}.conv.conv1.0.weight"].shape[0]
    weight = _conv(sd, f"{name}.conv.conv1.0", x)
    weight = _conv(sd, f"{name}.conv.conv1.1", weight, padding=k // 2, groups=reduced)
    weight = _conv(sd, f"{name}.conv.conv2.0", weight)
    b, _, h, w = weight.shape
    weight = weight.reshape(b, weight.shape[1] // (k * k), k, k, h, w)
    return _conv(sd, f"{name}.conv1", idynamic(x, weight, (k - 1) // 2))


def _attend(qkv: torch.Tensor, temperature: torch.Tensor, activation: str) -> torch.Tensor:
    """`_forward`: (b, 3C, h, w) → (b, heads, C/heads, h·w)."""
    heads = temperature.shape[0]
    q, k, v = qkv.chunk(3, dim=1)
    b, c, h, w = q.shape
    q, k, v = (t.reshape(b, heads, c // heads, h * w) for t in (q, k, v))
    attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * temperature
    if activation == "relu":
        attn = F.relu(attn)
    elif activation == "gelu":
        attn = F.gelu(attn)
    else:
        attn = torch.sigmoid(attn)
    return attn @ v


def grids(h: int, w: int, kernel: int) -> list[tuple[int, int, int, int]]:
    """The official `grids` loop: (i, j, k1, k2) of each crop, row by row."""
    k1, k2 = min(h, kernel), min(w, kernel)
    num_row, num_col = (h - 1) // k1 + 1, (w - 1) // k2 + 1
    step_j = k2 if num_col == 1 else math.ceil((w - k2) / (num_col - 1) - 1e-8)
    step_i = k1 if num_row == 1 else math.ceil((h - k1) / (num_row - 1) - 1e-8)
    crops = []
    i, last_i = 0, False
    while i < h and not last_i:
        j = 0
        if i + k1 >= h:
            i, last_i = h - k1, True
        last_j = False
        while j < w and not last_j:
            if j + k2 >= w:
                j, last_j = w - k2, True
            crops.append((i, j, k1, k2))
            j = j + step_j
        i = i + step_i
    return crops


def _sparse_attention(
    sd: Weights, name: str, x: torch.Tensor, tlc_kernel: int | None, activation: str
) -> torch.Tensor:
    """`SparseAttention.forward`; tlc_kernel None: the training-mode (or `tlc_flag: false`) path."""
    temperature = sd[f"{name}.temperature"]
    qkv = _conv(sd, f"{name}.qkv_dwconv", _conv(sd, f"{name}.qkv", x), padding=1, groups=3 * x.shape[1])
    b, c, h, w = x.shape
    if tlc_kernel is None:
        out = _attend(qkv, temperature, activation).reshape(b, c, h, w)
        return _conv(sd, f"{name}.project_out", out)
    outs = []
    for image in qkv.split(1):  # the official grids assert a batch of 1
        crops = grids(h, w, tlc_kernel)
        parts = torch.cat([image[:, :, i : i + k1, j : j + k2] for i, j, k1, k2 in crops], dim=0)
        out = _attend(parts, temperature, activation).reshape(len(crops), c, parts.shape[2], parts.shape[3])
        preds = torch.zeros(1, c, h, w, dtype=x.dtype)
        count = torch.zeros(1, 1, h, w, dtype=x.dtype)
        for cnt, (i, j, k1, k2) in enumerate(crops):
            preds[0, :, i : i + k1, j : j + k2] += out[cnt]
            count[0, 0, i : i + k1, j : j + k2] += 1.0
        outs.append(preds / count)
    return _conv(sd, f"{name}.project_out", torch.cat(outs))


def dlgsanet(
    sd: Weights,
    x: torch.Tensor,
    *,
    tlc_kernel: int | None,
    activation: str = "relu",
    img_range: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The official DLGSANet (`buildblock_type: sparseedge`) forward in eval mode (tlc_kernel None: training
    mode or `tlc_flag: false`). Structure read off the keys."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    x = x.to(dtype)
    in_chans = sd["overlap_embed.0.proj.weight"].shape[1]
    mean = torch.tensor(RGB_MEAN if in_chans == 3 else (0.0,), dtype=dtype).view(1, -1, 1, 1)
    x = (x - mean) * img_range
    x = _conv(sd, "overlap_embed.0.proj", x, padding=1)
    feat = x
    g = 0
    while f"deep_feature_extraction.{g}.body.0.norm1.body.weight" in sd:
        group_in = feat
        i = 0
        while f"deep_feature_extraction.{g}.body.{i}.norm1.body.weight" in sd:
            name = f"deep_feature_extraction.{g}.body.{i}"
            normed = _layer_norm(sd, f"{name}.norm1", feat)
            feat = _idynamic_block(sd, f"{name}.IDynamicDWConv", normed) + feat
            feat = _gdfn(sd, f"{name}.IDynamic_ffn", _layer_norm(sd, f"{name}.norm2", feat)) + feat
            name = f"deep_feature_extraction.{g}.body.{i + 1}"
            attn_in = _layer_norm(sd, f"{name}.norm3", feat)
            feat = _sparse_attention(sd, f"{name}.restormer_attn", attn_in, tlc_kernel, activation) + feat
            feat = _gdfn(sd, f"{name}.restormer_ffn", _layer_norm(sd, f"{name}.norm4", feat)) + feat
            i += 2
        feat = _conv(sd, f"deep_feature_extraction.{g}.body.{i}", feat, padding=1) + group_in
        g += 1
    x = _conv(sd, f"deep_feature_extraction.{g}", feat, padding=1) + x
    if "conv_before_upsample.0.weight" in sd:
        x = F.leaky_relu(_conv(sd, "conv_before_upsample.0", x, padding=1), 0.01)
        index = 0
        while f"upsample.{index}.weight" in sd:
            x = _conv(sd, f"upsample.{index}", x, padding=1)
            x = F.pixel_shuffle(x, math.isqrt(x.shape[1] // sd[f"upsample.{index}.weight"].shape[1]))
            index += 2
        x = _conv(sd, "conv_last", x, padding=1)
    else:
        x = _conv(sd, "upsample.0", x, padding=1)
        x = F.pixel_shuffle(x, math.isqrt(x.shape[1] // in_chans))
    return x / img_range + mean
