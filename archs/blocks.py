"""Blocks shared by several families: convolution, dilated convolution, pixel (un)shuffle, mean shift,
channel attention, upsamplers, MLP, the residual-group closing convolution (1conv/3conv).

Module and parameter names follow the official code that uses each block, so checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archs.fused_conv import conv_gelu, conv_then, fusable
from archs.registry import MissingHyperParameter, StateDict, shape
from kernels.tracing import is_exporting

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def reflect_pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad the bottom and right of (B, C, H, W) to multiples of `multiple`, as the official
    `check_image_size` of the Swin-derived and unshuffling networks does."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (multiple - w % multiple) % multiple, 0, (multiple - h % multiple) % multiple),
                 mode="reflect")


def windowed_pixelshuffle_forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classical-SR forward HAT and DRCT share with SwinIR's pixelshuffle path: reflect-pad to the window,
    normalise, shallow conv, deep features (`net.forward_features`) with a residual, pixel-shuffle
    reconstruction, de-normalise, crop to scale × input. `net` holds window_size, mean, img_range, scale,
    conv_first, conv_after_body, conv_before_upsample, upsample and conv_last."""
    h, w = x.shape[2:]
    x = (reflect_pad_to(x, net.window_size) - net.mean) * net.img_range
    x = net.conv_first(x)
    x = net.conv_after_body(net.forward_features(x)) + x
    x = net.conv_last(net.upsample(net.conv_before_upsample(x)))
    x = x / net.img_range + net.mean
    return x[:, :, : h * net.scale, : w * net.scale]


def default_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A 'same'-padded convolution with bias (EDSR-PyTorch's `default_conv`)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class DilatedConv2d(nn.Conv2d):
    """nn.Conv2d for dilation > 1 (same parameters and output) that trains correctly in bfloat16 on CPU.

    With torch 2.13's oneDNN, the weight gradient of a bf16 stride-1 dilated convolution over a channels-last
    input is wrong on CPU (relative error ~1, often inf/NaN from uninitialised memory; any groups, kernel 3
    or 5, inputs from 32x48 up; fp32, fp16 and NCHW inputs are right). Such inputs are made NCHW-contiguous
    when a weight gradient will be taken in bf16 (under CPU autocast or with bf16 tensors), and only then.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and (x.dtype == torch.bfloat16 or torch.is_autocast_enabled("cpu"))
        ):
            x = x.contiguous()
        return super().forward(x)


def pixel_shuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """F.pixel_shuffle, as a view, a permute and one copy for contiguous CPU tensors: the same values, and
    several times faster than torch 2.13's CPU kernel (`python -m benchmarks.histogram_ops`). Exports keep
    F.pixel_shuffle (one DepthToSpace node)."""
    if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or is_exporting():
        return F.pixel_shuffle(x, factor)
    b, c, h, w = x.shape
    out = c // (factor * factor)
    grouped = x.view(b, out, factor, factor, h, w).permute(0, 1, 4, 2, 5, 3)
    return grouped.reshape(b, out, h * factor, w * factor)


def pixel_unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """F.pixel_unshuffle, as `pixel_shuffle` does it (a view, a permute and one copy)."""
    if x.device.type != "cpu" or x.dim() != 4 or not x.is_contiguous() or is_exporting():
        return F.pixel_unshuffle(x, factor)
    b, c, h, w = x.shape
    return (
        x.view(b, c, h // factor, factor, w // factor, factor)
        .permute(0, 1, 3, 5, 2, 4)
        .reshape(b, c * factor * factor, h // factor, w // factor)
    )


class PixelShuffle(nn.PixelShuffle):
    """nn.PixelShuffle by `pixel_shuffle`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor)


class PixelUnshuffle(nn.PixelUnshuffle):
    """nn.PixelUnshuffle by `pixel_unshuffle`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_unshuffle(x, self.downscale_factor)


class MeanShift(nn.Conv2d):
    """Adds (sign=+1) or subtracts (sign=-1) `rgb_range * mean / std` per channel as a frozen 1x1 convolution.

    Weight and bias are parameters since the official checkpoints store them (`sub_mean`, `add_mean`), and
    are frozen as the authors meant (their `self.requires_grad = False` froze nothing, so the stored values
    may have drifted in training: always load them, never recompute them).
    """

    def __init__(self, rgb_range: float, rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN,
                 rgb_std: tuple[float, float, float] = (1.0, 1.0, 1.0), sign: int = -1) -> None:
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean) / std)
        self.requires_grad_(False)


def _gate(channels: int, squeezed: int) -> list[nn.Module]:
    return [nn.Conv2d(channels, squeezed, 1), nn.ReLU(inplace=True), nn.Conv2d(squeezed, channels, 1),
            nn.Sigmoid()]


class ChannelAttention(nn.Module):
    """x times sigmoid(conv(relu(conv(mean_hw(x))))) per channel: RCAN's `CALayer`, keys `conv_du.{0,2}`."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(*_gate(channels, channels // reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class PooledChannelAttention(nn.Module):
    """The same gate laid out as BasicSR's and HAT's `ChannelAttention` (keys `attention.{1,3}`)."""

    def __init__(self, channels: int, squeeze_factor: int = 16) -> None:
        super().__init__()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_gate(channels, channels // squeeze_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class Upsampler(nn.Sequential):
    """Pixel-shuffle upsampler: log2(scale) x (3x3 conv to 4n, shuffle 2) for powers of two, or one x3 step.

    Keys `<name>.0`, `<name>.2`, ... as EDSR-PyTorch's `Upsampler` and BasicSR's `Upsample`. With
    `identity_at_1`, scale 1 gives no layers, as in that code (log2(1) = 0 steps): RCAN's and HAN's x1.
    """

    def __init__(self, scale: int, n_feats: int, *, identity_at_1: bool = False) -> None:
        layers: list[nn.Module] = []
        if scale == 1 and identity_at_1:
            pass
        elif scale >= 2 and (scale & (scale - 1)) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [default_conv(n_feats, 4 * n_feats, 3), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [default_conv(n_feats, 9 * n_feats, 3), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"the pixel-shuffle upsampler supports scales 2^n and 3, not {scale}")
        super().__init__(*layers)


def upsampler_scale(state_dict: StateDict, prefix: str, *, identity_at_1: bool = False) -> int:
    """The scale of the `Upsampler` whose keys start with `prefix` (e.g. 'tail.0.'), from its conv shapes;
    with `identity_at_1`, no convs at all is x1."""
    scale = 1
    index = 0
    while f"{prefix}{index}.weight" in state_dict:
        out_channels, in_channels = shape(state_dict, f"{prefix}{index}.weight")[:2]
        step = math.isqrt(out_channels // in_channels)
        if step * step * in_channels != out_channels or step not in (2, 3):
            raise MissingHyperParameter(f"cannot tell the scale: {prefix}{index}.weight maps {in_channels} "
                                        f"to {out_channels} channels, not a x2 or x3 pixel-shuffle step")
        scale *= step
        index += 2
    if scale == 1 and identity_at_1:
        return 1
    if scale == 1 or (scale != 3 and scale & (scale - 1)):
        raise MissingHyperParameter(f"cannot tell the scale: the upsampler {prefix!r} is neither x2^n nor x3")
    return scale


class Mlp(nn.Module):
    """Transformer feed-forward: Linear → GELU → Linear (keys `fc1`, `fc2`, as timm / Swin / SwinIR)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class UpsampleOneStep(nn.Sequential):
    """Lightweight upsampler: one 3x3 conv to scale²·out channels, then pixel shuffle (SwinIR's
    `UpsampleOneStep`, 'pixelshuffledirect'); keys `<name>.0`."""

    def __init__(self, scale: int, num_feat: int, num_out_ch: int) -> None:
        super().__init__(nn.Conv2d(num_feat, scale * scale * num_out_ch, 3, 1, 1), nn.PixelShuffle(scale))


class GatedFeedForward(nn.Module):
    """Restormer's gated depth-wise feed-forward (GDFN), bias-free: 1×1 to 2·hidden, 3×3 depth-wise,
    GELU(first half) · second half, 1×1 back to `dim` (keys `project_in`, `dwconv`, `project_out`).

    CPU inference (archs.fused_conv) runs the depth-wise convolution in two halves, the GELU fused into the
    first and the gate's product into the second, and a residual into `project_out`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The feed-forward of `x`, plus `residual` when given."""
        if fusable(x):
            return self._fused(x, residual)
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        out = self.project_out(F.gelu(x1) * x2)
        return out if residual is None else out + residual

    def _fused(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        inner = self.project_in(x)
        hidden = inner.shape[1] // 2
        dwconv, weight = self.dwconv, self.dwconv.weight
        gate = conv_gelu(dwconv, inner[:, :hidden], weight[:hidden])
        gated = conv_then(dwconv, inner[:, hidden:], "mul", gate, weight=weight[hidden:])
        if residual is None:
            return self.project_out(gated)
        return conv_then(self.project_out, gated, "add", residual)


def residual_conv(dim: int, resi_connection: str) -> nn.Module:
    """The convolution closing a residual group and the body: one 3×3 ('1conv') or a 3×3, 1×1, 3×3
    bottleneck through dim/4 channels with LeakyReLU 0.2 ('3conv')."""
    if resi_connection == "1conv":
        return nn.Conv2d(dim, dim, 3, 1, 1)
    if resi_connection == "3conv":
        return nn.Sequential(nn.Conv2d(dim, dim // 4, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim // 4, 1, 1, 0), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(dim // 4, dim, 3, 1, 1))
    raise ValueError(f"resi_connection must be '1conv' or '3conv', not {resi_connection!r}")
