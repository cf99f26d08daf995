"""RRDBNet, the ESRGAN / Real-ESRGAN / Real-ESRNet generator (Wang et al. 2018, 2021), key-compatible with
BasicSR's `basicsr/archs/rrdbnet_arch.py` (x1 and x2 through a pixel unshuffle in front of the x4 network).

Input and output are images in [0, 1]. The original ESRGAN release's key layout (`model.0.weight`, ...) and
BSRGAN/RealSR's (`RRDB_trunk.*`) are mapped onto BasicSR's names for the x4 networks they share.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from archs.blocks import reflect_pad_to
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions (each sees the block input and all earlier outputs), the last
    one's output scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        for i in range(5):
            out = num_feat if i == 4 else num_grow_ch
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for i in range(1, 5):
            features.append(_lrelu(getattr(self, f"conv{i}")(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * 0.2 + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, their result scaled by 0.2 plus the input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """`num_block` RRDBs of `num_feat` channels and two nearest x2 upsampling convolutions.

    BasicSR's arguments (it requires the channel counts; 3 here by default). Scales 2 and 1 pixel-unshuffle
    the input by 2 and 4 first (so `conv_first` takes 4x or 16x the channels) and keep the x4 tail. BasicSR
    asserts that such inputs are multiples of the unshuffle factor; here they are reflect-padded at the bottom
    and right and the output cropped, as Real-ESRGAN's inference (`RealESRGANer`'s mod padding) does.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scales 1, 2 and 4, not {scale}")
        self.scale, self.num_in_ch = scale, num_in_ch
        self.unshuffle = 4 // scale
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(reflect_pad_to(x, self.unshuffle), self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(_lrelu(self.conv_hr(feat)))
        return out[:, :, : h * self.scale, : w * self.scale] if self.unshuffle > 1 else out


_BASICSR_KEYS = (
    "conv_first.weight",
    "body.0.rdb1.conv1.weight",
    "conv_body.weight",
    "conv_up1.weight",
    "conv_up2.weight",
    "conv_hr.weight",
    "conv_last.weight",
)
# The original ESRGAN's nn.Sequential (x4: conv, trunk, upsample+conv+lrelu twice, conv, lrelu, conv).
_OLD_KEYS = (
    "model.0.weight",
    "model.1.sub.0.RDB1.conv1.0.weight",
    "model.3.weight",
    "model.6.weight",
    "model.8.weight",
    "model.10.weight",
)
_BSRGAN_KEYS = (
    "conv_first.weight",
    "RRDB_trunk.0.RDB1.conv1.weight",
    "trunk_conv.weight",
    "upconv1.weight",
    "upconv2.weight",
    "HRconv.weight",
    "conv_last.weight",
)


def detect(state_dict: StateDict) -> bool:
    """BasicSR's RRDBNet, or an x4 ESRGAN in the original or BSRGAN key layout (not ESRGAN+, x2 or x8)."""
    if all(key in state_dict for key in _OLD_KEYS):
        extra = "model.9.weight" in state_dict or "model.11.weight" in state_dict  # x8
        return not extra and not any(".conv1x1." in key for key in state_dict)  # ESRGAN+
    return all(key in state_dict for key in _BASICSR_KEYS) or all(key in state_dict for key in _BSRGAN_KEYS)


_OLD_RULES = (
    (r"^model\.0\.", "conv_first."),
    (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", r"body.\1.rdb\2.conv\3."),
    (r"^model\.3\.", "conv_up1."),
    (r"^model\.6\.", "conv_up2."),
    (r"^model\.8\.", "conv_hr."),
    (r"^model\.10\.", "conv_last."),
    (r"^RRDB_trunk\.(\d+)\.RDB(\d)\.", r"body.\1.rdb\2."),
    (r"^trunk_conv\.", "conv_body."),
    (r"^upconv(\d)\.", r"conv_up\1."),
    (r"^HRconv\.", "conv_hr."),
)


def remap_keys(state_dict: StateDict) -> StateDict:
    """The original ESRGAN's and BSRGAN's key names mapped onto BasicSR's; BasicSR's pass through."""
    if "model.0.weight" not in state_dict and "RRDB_trunk.0.RDB1.conv1.weight" not in state_dict:
        return state_dict
    trunk_end = f"model.1.sub.{count_prefixed(state_dict, 'model.1.sub.') - 1}."
    remapped: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        key = "conv_body." + key[len(trunk_end) :] if key.startswith(trunk_end) else key
        for pattern, replacement in _OLD_RULES:
            key = re.sub(pattern, replacement, key)
        remapped[key] = tensor
    return remapped


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    """The constructor's arguments. BasicSR's x1, x2 and x4 networks differ only in `conv_first`'s input
    channels: 16x the output channels means x1, 4x means x2 (pixel unshuffle by 4 or 2), anything else x4."""
    num_feat, inputs = shape(state_dict, "conv_first.weight")[:2]
    num_out_ch = shape(state_dict, "conv_last.weight")[0]
    found = {16 * num_out_ch: 1, 4 * num_out_ch: 2}.get(inputs, 4)
    if scale not in (None, found):
        raise MissingHyperParameter(f"these RRDBNet weights are x{found}, not x{scale}")
    return {
        "num_in_ch": inputs // (4 // found) ** 2,
        "num_out_ch": num_out_ch,
        "scale": found,
        "num_feat": num_feat,
        "num_block": count_prefixed(state_dict, "body."),
        "num_grow_ch": shape(state_dict, "body.0.rdb1.conv1.weight")[0],
    }


FAMILY = Family(
    name="RRDBNet",
    build=RRDBNet,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=4,  # the x1 unshuffle factor: tiles of x1 and x2 models then need no padding
    scales=(1, 2, 4),
    supports_fp16=True,
    supports_bf16=True,
    channels_last=True,
    presets={
        "RealESRGAN_x4plus": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32},
        "RealESRGAN_x4plus_anime_6B": {"num_feat": 64, "num_block": 6, "num_grow_ch": 32},
    },
    remap_keys=remap_keys,
)
