"""Functional transcription of the official HOGformer forward (float64 by default), off a state dict.

Written from Fire-friend/HOGformer @be6fd81 `settingI/basicsr/models/archs/hogformer_arch.py` (`HOGformer`,
`TransformerBlock`, `Attention_DHOGSA`, `FFN_DIFF`, the parameter-free `LayerNorm`) with the official
einops patterns and the official per-bin loop, plus the reflect padding to 16 of the official test script
`settingI/Allweather/test_histoformer.py`. No `archs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

Weights = dict[str, torch.Tensor]
N_BINS, CELL = 9, 8


def _conv(w: Weights, name: str, x: torch.Tensor, padding: int = 0, groups: int = 1, dilation: int = 1):
    return F.conv2d(
        x, w[f"{name}.weight"], w.get(f"{name}.bias"), padding=padding, groups=groups, dilation=dilation
    )


def layer_norm(x: torch.Tensor, bias_free: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    t = rearrange(x, "b c h w -> b (h w) c")
    sigma = t.var(-1, keepdim=True, unbiased=False)
    t = (
        t / torch.sqrt(sigma + 1e-5)
        if bias_free
        else (t - t.mean(-1, keepdim=True)) / torch.sqrt(sigma + 1e-5)
    )
    return rearrange(t, "b (h w) c -> b c h w", h=h, w=w)


def _split(x: torch.Tensor):
    b, c, h, w = x.shape
    pad_h, pad_w = (CELL - h % CELL) % CELL, (CELL - w % CELL) % CELL
    x = F.pad(x, (0, pad_w, 0, pad_h))
    patches = rearrange(x, "b c (h p1) (w p2) -> b (h w) c (p1 p2)", p1=CELL, p2=CELL)
    return patches, (h, w, (h + pad_h) // CELL, (w + pad_w) // CELL)


def _merge(patches: torch.Tensor, info) -> torch.Tensor:
    h, w, n_h, n_w = info
    x = rearrange(patches, "b (h w) c (p1 p2) -> b c (h p1) (w p2)", h=n_h, w=n_w, p1=CELL, p2=CELL)
    return x[:, :, :h, :w]


def _sobel(x: torch.Tensor, w: Weights, name: str):
    c = x.shape[1]
    gx = F.conv2d(x, w[f"{name}.sobel_x"][:c], padding=1, groups=c)
    gy = F.conv2d(x, w[f"{name}.sobel_y"][:c], padding=1, groups=c)
    return torch.sqrt(gx**2 + gy**2 + 1e-6), torch.atan2(gy, gx)


def _hog(x_half: torch.Tensor, w: Weights, name: str):
    magnitude, orientation = _sobel(x_half, w, name)
    orientation_bin = ((orientation + torch.pi) / (2 * torch.pi) * N_BINS).long() % N_BINS
    patches_x, info = _split(x_half)
    patches_mag, _ = _split(magnitude)
    patches_ori, _ = _split(orientation_bin.to(x_half.dtype))
    b, n, _, _ = patches_x.shape
    sort_values = torch.zeros_like(patches_x)
    hog = torch.zeros(b, n, N_BINS, dtype=x_half.dtype)
    for i in range(N_BINS):
        bin_magnitude = patches_mag * (patches_ori == i).to(x_half.dtype)
        sort_values += bin_magnitude * (i + 1)
        hog[..., i] = bin_magnitude.mean(dim=[-1, -2])
    hog = hog / (hog.sum(dim=-1, keepdim=True) + 1e-8)
    _, order = sort_values.sum(dim=2, keepdim=True).expand_as(patches_x).sort(dim=-1)
    return _merge(torch.gather(patches_x, -1, order), info), order, hog, info


def _attend(q, k, v, temperature: torch.Tensor, heads: int, box: bool) -> torch.Tensor:
    b = q.shape[0]
    length = q.shape[-1]
    pad = 0 if length % heads == 0 else (length // heads + 1) * heads - length
    q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    hw = q.shape[-1] // heads
    src = "b (head c) (factor hw)" if box else "b (head c) (hw factor)"
    tar = "b head (c factor) hw"
    q, k, v = (rearrange(t, f"{src} -> {tar}", factor=heads, hw=hw, head=heads) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1) * temperature).exp()
    out = attn / (attn.sum(-1, keepdim=True) + 1) @ v
    out = rearrange(out, f"{tar} -> {src}", factor=heads, hw=hw, b=b, head=heads)
    return out[:, :, : out.shape[-1] - pad]


def dhogsa(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    b, c, h, wd = x.shape
    half = c // 2
    heads = w[f"{name}.temperature"].shape[0]
    x_half, order, hog, info = _hog(x[:, :half], w, name)
    hog_map = rearrange(hog, "b (nh nw) bins -> b bins nh nw", nh=info[2], nw=info[3]).contiguous()
    hog_map = F.interpolate(_conv(w, f"{name}.bin_proj", hog_map), size=(h, wd), mode="bilinear")
    x = torch.cat((x_half + hog_map, x[:, half:]), dim=1)
    qkv = _conv(w, f"{name}.qkv_dwconv", _conv(w, f"{name}.qkv", x), padding=1, groups=5 * c)
    q1, k1, q2, k2, v = qkv.chunk(5, dim=1)
    magnitude, orientation = _sobel(v, w, name)
    weighted = magnitude.view(b, c, -1) * ((orientation + torch.pi) / (2 * torch.pi)).view(b, c, -1)
    _, idx = weighted.sum(dim=1).sort(dim=-1)
    idx = idx.unsqueeze(1).expand(b, c, -1)
    v, q1, k1, q2, k2 = (torch.gather(t.reshape(b, c, -1), 2, idx) for t in (v, q1, k1, q2, k2))
    temperature = w[f"{name}.temperature"]
    out1 = _attend(q1, k1, v, temperature, heads, True)
    out2 = _attend(q2, k2, v, temperature, heads, False)
    out1 = torch.scatter(out1, 2, idx, out1).view(b, c, h, wd)
    out2 = torch.scatter(out2, 2, idx, out2).view(b, c, h, wd)
    out = _conv(w, f"{name}.project_out", out1 * out2)
    patches, info = _split(out[:, :half])
    out[:, :half] = _merge(torch.scatter(patches, -1, order, patches), info)
    return out


def diff(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    quarter = w[f"{name}.dwconv_5.weight"].shape[0]
    x = F.pixel_shuffle(_conv(w, f"{name}.project_in", x), 2)
    x1, x2 = x.chunk(2, dim=1)
    x = F.mish(_conv(w, f"{name}.dwconv_dilated2_1", x2, padding=2, groups=quarter, dilation=2))
    x = x * _conv(w, f"{name}.dwconv_5", x1, padding=2, groups=quarter)
    x = x + w[f"{name}.sigma.scale"] * (x - F.gelu(_conv(w, f"{name}.decompose", x)))
    return _conv(w, f"{name}.project_out", F.pixel_unshuffle(x, 2))


def blocks(x: torch.Tensor, w: Weights, prefix: str, bias_free: bool) -> torch.Tensor:
    i = 0
    while f"{prefix}.{i}.attn_g_spatial.temperature" in w:
        x = x + dhogsa(layer_norm(x, bias_free), w, f"{prefix}.{i}.attn_g_spatial")
        x = x + diff(layer_norm(x, bias_free), w, f"{prefix}.{i}.ffn")
        i += 1
    return x


def _skip(x: torch.Tensor, w: Weights, name: str) -> torch.Tensor:
    x = _conv(w, f"{name}.proj.1", F.avg_pool2d(x, 2))
    return _conv(w, f"{name}.proj.2", x, padding=1, groups=x.shape[1])


def hogformer(w: Weights, x: torch.Tensor, bias_free: bool = False, dtype=torch.float64) -> torch.Tensor:
    """The official network on `x` reflect-padded to a multiple of 16 as the official test script, cropped."""
    w = {k: v.to(dtype) for k, v in w.items()}
    x = x.to(dtype)
    h, wd = x.shape[2], x.shape[3]
    factor = 16
    big_h, big_w = ((h + factor) // factor) * factor, ((wd + factor) // factor) * factor
    pad_h = big_h - h if h % factor != 0 else 0
    pad_w = big_w - wd if wd % factor != 0 else 0
    inp = F.pad(x, (0, pad_w, 0, pad_h), "reflect")

    def down(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(_conv(w, f"{name}.body.0", t, padding=1), 2)

    def up(name: str, t: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(_conv(w, f"{name}.body.0", t, padding=1), 2)

    enc1 = blocks(_conv(w, "patch_embed.proj", inp, padding=1), w, "encoder_level1", bias_free)
    skip1 = _skip(inp, w, "skip_patch_embed1")
    enc2 = _conv(w, "reduce_chan_level_1", torch.cat([down("down1_2", enc1), skip1], 1))
    enc2 = blocks(enc2, w, "encoder_level2", bias_free)
    skip2 = _skip(skip1, w, "skip_patch_embed2")
    enc3 = _conv(w, "reduce_chan_level_2", torch.cat([down("down2_3", enc2), skip2], 1))
    enc3 = blocks(enc3, w, "encoder_level3", bias_free)
    skip3 = _skip(skip2, w, "skip_patch_embed3")
    latent = _conv(w, "reduce_chan_level_3", torch.cat([down("down3_4", enc3), skip3], 1))
    latent = blocks(latent, w, "latent", bias_free)
    dec3 = _conv(w, "reduce_chan_level3", torch.cat([up("up4_3", latent), enc3], 1))
    dec3 = blocks(dec3, w, "decoder_level3", bias_free)
    dec2 = _conv(w, "reduce_chan_level2", torch.cat([up("up3_2", dec3), enc2], 1))
    dec2 = blocks(dec2, w, "decoder_level2", bias_free)
    dec1 = blocks(torch.cat([up("up2_1", dec2), enc1], 1), w, "decoder_level1", bias_free)
    dec1 = blocks(dec1, w, "refinement", bias_free)
    out = _conv(w, "output", dec1, padding=1) + inp
    return out[:, :, :h, :wd]
