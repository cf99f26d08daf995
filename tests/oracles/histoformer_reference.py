"""Functional transcription of the official Histoformer forward, off a state dict with the official keys.

Written from sunshangquan/Histoformer @1f045f0 `basicsr/models/archs/histoformer_arch.py` (LayerNorm through
`to_3d`/`to_4d`, `Attention_histogram` with its in-place half-channel sort, `pad`/`reshape_attn`/`softmax_1`
and scatter un-sorting, `FeedForward`, `SkipPatchEmbed`, `Histoformer.forward`) and the padding of
`Allweather/test_histoformer.py` around the network (reflect to the next multiple of 8, crop). Heads come
from each block's `temperature`, widths from the weights; the LayerNorm kind is an argument. No `archs`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

Weights = dict[str, torch.Tensor]


def _conv(sd: Weights, name: str, x: torch.Tensor, padding: int = 0, groups: int = 1, dilation: int = 1):
    return F.conv2d(
        x, sd[f"{name}.weight"], sd.get(f"{name}.bias"), padding=padding, groups=groups, dilation=dilation
    )


def _layer_norm(x: torch.Tensor, kind: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    t = rearrange(x, "b c h w -> b (h w) c")
    sigma = t.var(-1, keepdim=True, unbiased=False)
    if kind == "WithBias":
        t = (t - t.mean(-1, keepdim=True)) / torch.sqrt(sigma + 1e-5)
    else:
        t = t / torch.sqrt(sigma + 1e-5)
    return rearrange(t, "b (h w) c -> b c h w", h=h, w=w)


def _reshape_attn(q, k, v, factor: int, temperature: torch.Tensor, box: bool) -> torch.Tensor:
    b = q.shape[0]
    hw0 = q.shape[-1]
    t_pad = [0, 0] if hw0 % factor == 0 else [0, (hw0 // factor + 1) * factor - hw0]
    q, k, v = (F.pad(t, t_pad, "constant", 0) for t in (q, k, v))
    hw = q.shape[-1] // factor
    shape_ori = "b (head c) (factor hw)" if box else "b (head c) (hw factor)"
    shape_tar = "b head (c factor) hw"
    q, k, v = (
        rearrange(t, f"{shape_ori} -> {shape_tar}", factor=factor, hw=hw, head=factor) for t in (q, k, v)
    )
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    attn = (q @ k.transpose(-2, -1)) * temperature
    logit = attn.exp()
    attn = logit / (logit.sum(-1, keepdim=True) + 1)
    out = rearrange(attn @ v, f"{shape_tar} -> {shape_ori}", factor=factor, hw=hw, b=b, head=factor)
    return out[:, :, t_pad[0] : out.shape[-1] - t_pad[1]]


def attention(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    temperature = sd[f"{name}.temperature"]
    factor = temperature.shape[0]
    x = x.clone()
    b, c, h, w = x.shape
    x_sort, idx_h = x[:, : c // 2].sort(-2)
    x_sort, idx_w = x_sort.sort(-1)
    x[:, : c // 2] = x_sort
    qkv = _conv(sd, f"{name}.qkv_dwconv", _conv(sd, f"{name}.qkv", x), padding=1, groups=5 * c)
    q1, k1, q2, k2, v = qkv.chunk(5, dim=1)
    v, idx = v.reshape(b, c, -1).sort(dim=-1)
    q1, k1, q2, k2 = (torch.gather(t.reshape(b, c, -1), 2, idx) for t in (q1, k1, q2, k2))
    out1 = _reshape_attn(q1, k1, v, factor, temperature, True)
    out2 = _reshape_attn(q2, k2, v, factor, temperature, False)
    out1 = torch.scatter(out1, 2, idx, out1).reshape(b, c, h, w)
    out2 = torch.scatter(out2, 2, idx, out2).reshape(b, c, h, w)
    out = _conv(sd, f"{name}.project_out", out1 * out2)
    replace = out[:, : c // 2]
    replace = torch.scatter(replace, -1, idx_w, replace)
    replace = torch.scatter(replace, -2, idx_h, replace)
    out[:, : c // 2] = replace
    return out


def _ffn(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = F.pixel_shuffle(_conv(sd, f"{name}.project_in", x), 2)
    x1, x2 = x.chunk(2, dim=1)
    quarter = x1.shape[1]
    x1 = _conv(sd, f"{name}.dwconv_5", x1, padding=2, groups=quarter)
    x2 = _conv(sd, f"{name}.dwconv_dilated2_1", x2, padding=2, groups=quarter, dilation=2)
    return _conv(sd, f"{name}.project_out", F.pixel_unshuffle(F.mish(x2) * x1, 2))


def _level(sd: Weights, name: str, x: torch.Tensor, norm: str) -> torch.Tensor:
    i = 0
    while f"{name}.{i}.attn_g.temperature" in sd:
        x = x + attention(sd, f"{name}.{i}.attn_g", _layer_norm(x, norm))
        x = x + _ffn(sd, f"{name}.{i}.ffn", _layer_norm(x, norm))
        i += 1
    return x


def _skip(sd: Weights, name: str, x: torch.Tensor) -> torch.Tensor:
    x = F.avg_pool2d(x, 2, stride=2)
    return _conv(sd, f"{name}.proj.2", _conv(sd, f"{name}.proj.1", x), padding=1, groups=x.shape[1])


def network(sd: Weights, inp: torch.Tensor, norm: str = "WithBias") -> torch.Tensor:
    """`Histoformer.forward` on an input whose sides are multiples of 8."""
    enc1 = _level(sd, "encoder_level1", _conv(sd, "patch_embed.proj", inp, padding=1), norm)
    down = F.pixel_unshuffle(_conv(sd, "down1_2.body.0", enc1, padding=1), 2)
    skip1 = _skip(sd, "skip_patch_embed1", inp)
    enc2 = _level(sd, "encoder_level2", _conv(sd, "reduce_chan_level_1", torch.cat([down, skip1], 1)), norm)
    down = F.pixel_unshuffle(_conv(sd, "down2_3.body.0", enc2, padding=1), 2)
    skip2 = _skip(sd, "skip_patch_embed2", skip1)
    enc3 = _level(sd, "encoder_level3", _conv(sd, "reduce_chan_level_2", torch.cat([down, skip2], 1)), norm)
    down = F.pixel_unshuffle(_conv(sd, "down3_4.body.0", enc3, padding=1), 2)
    skip3 = _skip(sd, "skip_patch_embed3", skip2)
    latent = _level(sd, "latent", _conv(sd, "reduce_chan_level_3", torch.cat([down, skip3], 1)), norm)
    up = F.pixel_shuffle(_conv(sd, "up4_3.body.0", latent, padding=1), 2)
    dec3 = _level(sd, "decoder_level3", _conv(sd, "reduce_chan_level3", torch.cat([up, enc3], 1)), norm)
    up = F.pixel_shuffle(_conv(sd, "up3_2.body.0", dec3, padding=1), 2)
    dec2 = _level(sd, "decoder_level2", _conv(sd, "reduce_chan_level2", torch.cat([up, enc2], 1)), norm)
    up = F.pixel_shuffle(_conv(sd, "up2_1.body.0", dec2, padding=1), 2)
    dec1 = _level(sd, "refinement", _level(sd, "decoder_level1", torch.cat([up, enc1], 1), norm), norm)
    return _conv(sd, "output", dec1, padding=1) + inp


def histoformer(sd: Weights, x: torch.Tensor, norm: str = "WithBias", factor: int = 8) -> torch.Tensor:
    """The official test script's run: reflect-pad bottom/right to a multiple of `factor`, run, crop."""
    sd = {k: v.to(torch.float64) for k, v in sd.items()}
    x = x.to(torch.float64)
    h, w = x.shape[2], x.shape[3]
    big_h, big_w = ((h + factor) // factor) * factor, ((w + factor) // factor) * factor
    pad_h = big_h - h if h % factor != 0 else 0
    pad_w = big_w - w if w % factor != 0 else 0
    x = F.pad(x, (0, pad_w, 0, pad_h), "reflect")
    return network(sd, x, norm)[:, :, :h, :w]
