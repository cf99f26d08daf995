"""GAN discriminators for ESRGAN / Real-ESRGAN training, key-compatible with the official ones: Real-ESRGAN's
U-Net with spectral norm (`realesrgan/archs/discriminator_arch.py`) and BasicSR's VGG-style classifier
(`basicsr/archs/discriminator_arch.py`). Training-only: they are not detection families.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class UNetDiscriminatorSN(nn.Module):
    """A per-pixel realness map (N x 1 x H x W): three stride-2 4x4 convolutions down, three bilinear x2 + 3x3
    convolutions up (with skip connections by addition), two 3x3 convolutions and a 1-channel output.

    Every convolution but the first and the last is spectrally normalised by `torch.nn.utils.spectral_norm`
    (keys `weight_orig`, `weight_u`, `weight_v`): one power iteration per training-mode forward. H and W must
    be multiples of 8 (as in the official code, where other sizes fail at the skip additions).
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        self.skip_connection = skip_connection
        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = _lrelu(self.conv0(x))
        x1 = _lrelu(self.conv1(x0))
        x2 = _lrelu(self.conv2(x1))
        x3 = _lrelu(self.conv3(x2))
        up = x3
        for conv, skip in ((self.conv4, x2), (self.conv5, x1), (self.conv6, x0)):
            up = _lrelu(conv(_up(up)))
            if self.skip_connection:
                up = up + skip
        out = _lrelu(self.conv8(_lrelu(self.conv7(up))))
        return self.conv9(out)


class VGGStyleDiscriminator(nn.Module):
    """One realness score per image (N x 1) for `input_size` 128 or 256 inputs: pairs of a 3x3 and a stride-2
    4x4 convolution with batch norm (five pairs, six at 256) down to 4 x 4, then two linear layers."""

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"VGGStyleDiscriminator: input size must be 128 or 256, not {input_size}")
        self.input_size = input_size
        f = num_feat
        self.conv0_0 = nn.Conv2d(num_in_ch, f, 3, 1, 1, bias=True)
        self.conv0_1 = nn.Conv2d(f, f, 4, 2, 1, bias=False)
        self.bn0_1 = nn.BatchNorm2d(f, affine=True)
        widths = [f, f * 2, f * 4, f * 8, f * 8] + ([f * 8] if input_size == 256 else [])
        for i in range(1, len(widths)):
            setattr(self, f"conv{i}_0", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1, bias=False))
            setattr(self, f"bn{i}_0", nn.BatchNorm2d(widths[i], affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(widths[i], widths[i], 4, 2, 1, bias=False))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(widths[i], affine=True))
        self.stages = len(widths)
        self.linear1 = nn.Linear(f * 8 * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"VGGStyleDiscriminator({self.input_size}) takes {self.input_size}x{self.input_size} inputs, "
                f"not {tuple(x.shape[-2:])}"
            )
        feat = _lrelu(self.conv0_0(x))
        feat = _lrelu(self.bn0_1(self.conv0_1(feat)))
        for i in range(1, self.stages):
            feat = _lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = _lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
        return self.linear2(_lrelu(self.linear1(feat.flatten(1))))


def _vgg_style_128(num_in_ch: int = 3, num_feat: int = 64) -> VGGStyleDiscriminator:
    """BasicSR ≤ 1.3.4.8's `VGGStyleDiscriminator128` (the same keys as input_size 128)."""
    return VGGStyleDiscriminator(num_in_ch, num_feat, input_size=128)


def _vgg_style_256(num_in_ch: int = 3, num_feat: int = 64) -> VGGStyleDiscriminator:
    """BasicSR ≤ 1.3.4.8's `VGGStyleDiscriminator256` (the same keys as input_size 256)."""
    return VGGStyleDiscriminator(num_in_ch, num_feat, input_size=256)


# Options files' `network_d.type` → constructor. BasicSR registers its U-Net copy as
# UNetDiscriminatorSN_basicsr (its registry falls back to that name), Real-ESRGAN as UNetDiscriminatorSN;
# VGGStyleDiscriminator128/256 are the names before BasicSR merged them (commit 0a564ed, 2021-11).
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "UNetDiscriminatorSN": UNetDiscriminatorSN,
    "UNetDiscriminatorSN_basicsr": UNetDiscriminatorSN,
    "VGGStyleDiscriminator": VGGStyleDiscriminator,
    "VGGStyleDiscriminator128": _vgg_style_128,
    "VGGStyleDiscriminator256": _vgg_style_256,
}
