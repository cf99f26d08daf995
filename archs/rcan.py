"""RCAN, residual channel attention network (Zhang et al., ECCV 2018), keyed as the official weights.

Official code: yulunzhang/RCAN `RCAN_TestCode/code/model/rcan.py`; BasicSR's renamed checkpoints load through
`remap_keys`. Input and output are RGB in [0, 1]; inside, as in the authors' code, it works in 0..rgb_range
(255): `forward` multiplies by rgb_range on the way in and divides on the way out.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from archs.blocks import (
    DIV2K_RGB_MEAN,
    ChannelAttention,
    MeanShift,
    Upsampler,
    default_conv,
    reflect_pad_to,
    upsampler_scale,
)
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape


class RCAB(nn.Module):
    """Residual channel attention block: conv, ReLU, conv, channel attention, plus the input."""

    def __init__(self, n_feats: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(default_conv(n_feats, n_feats, 3), nn.ReLU(inplace=True),
                                  default_conv(n_feats, n_feats, 3), ChannelAttention(n_feats, reduction))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ResidualGroup(nn.Module):
    """`n_resblocks` RCABs and a closing conv, plus the input (`body.{0..n-1}` blocks, `body.n` conv)."""

    def __init__(self, n_feats: int, n_resblocks: int, reduction: int) -> None:
        super().__init__()
        blocks = [RCAB(n_feats, reduction) for _ in range(n_resblocks)]
        self.body = nn.Sequential(*blocks, default_conv(n_feats, n_feats, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class RCAN(nn.Module):
    """RCAN: mean shift, head conv, `n_resgroups` residual groups and a conv with a long skip, upsampler.

    Two community variants of traiNNer-redux/neosr (and spandrel) are built too: `norm=False` drops the mean
    shifts (and works in 0..1: rgb_range 1), and `unshuffle_mod` (x1 and x2 only) puts a PixelUnshuffle by
    4/scale in front of the head conv, so the body runs at a quarter of the output size and the upsampler at
    x4; the input is reflect-padded to that factor and the output cropped back.
    """

    def __init__(self, n_resgroups: int = 10, n_resblocks: int = 20, n_feats: int = 64, reduction: int = 16,
                 scale: int = 4, rgb_range: float = 255.0,
                 rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN, norm: bool = True,
                 unshuffle_mod: bool = False) -> None:
        super().__init__()
        if unshuffle_mod and scale not in (1, 2):
            raise ValueError(f"unshuffle_mod is for x1 and x2 models, not x{scale}")
        self.scale, self.rgb_range = scale, rgb_range if norm else 1.0
        self.unshuffle = 4 // scale if unshuffle_mod else 1
        if norm:
            self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
            self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        head = [default_conv(3 * self.unshuffle**2, n_feats, 3)]
        if unshuffle_mod:
            head.insert(0, nn.PixelUnshuffle(self.unshuffle))
        self.head = nn.Sequential(*head)
        groups = [ResidualGroup(n_feats, n_resblocks, reduction) for _ in range(n_resgroups)]
        self.body = nn.Sequential(*groups, default_conv(n_feats, n_feats, 3))
        upscale = 4 if unshuffle_mod else scale
        self.tail = nn.Sequential(Upsampler(upscale, n_feats, identity_at_1=True),
                                  default_conv(n_feats, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if self.unshuffle > 1:
            k = self.unshuffle
            x = reflect_pad_to(x, k)
        x = x * self.rgb_range
        if hasattr(self, "sub_mean"):
            x = self.sub_mean(x)
        x = self.head(x)
        x = self.tail(self.body(x) + x)
        if hasattr(self, "add_mean"):
            x = self.add_mean(x)
        x = x / self.rgb_range
        return x[:, :, : h * self.scale, : w * self.scale] if self.unshuffle > 1 else x


# Keys only HAN has; RCAN's own keys are a subset of HAN's, so RCAN refuses these whatever the registry order.
_HAN_KEYS = ("la.gamma", "csa.gamma", "csa.conv.weight", "last_conv.weight")
# (No upsampler key: x1 models have none, their upsampler being empty as in the official code; no head.0 or
# mean shift either: the community variants put a PixelUnshuffle first, or leave the mean shifts out.)
_OFFICIAL_KEYS = ("body.0.body.0.body.0.weight", "body.0.body.0.body.3.conv_du.0.weight", "tail.1.weight")
_BASICSR_KEYS = ("conv_first.weight", "body.0.residual_group.0.rcab.0.weight",
                 "body.0.residual_group.0.rcab.3.attention.1.weight", "body.0.conv.weight",
                 "conv_after_body.weight", "conv_last.weight")


def detect(state_dict: StateDict) -> bool:
    if any(key in state_dict for key in _HAN_KEYS):
        return False
    official = all(key in state_dict for key in _OFFICIAL_KEYS) and (
        "head.0.weight" in state_dict or "head.1.weight" in state_dict
    )
    return official or all(key in state_dict for key in _BASICSR_KEYS)


def _rgb_range(state_dict: StateDict) -> float:
    """1 or 255, read off `add_mean.bias` = rgb_range * mean (the only two ranges EDSR-style code uses)."""
    ratio = float(state_dict["add_mean.bias"].double().sum()) / sum(DIV2K_RGB_MEAN)
    for rgb_range in (255.0, 1.0):
        if rgb_range / 2 < ratio < rgb_range * 2:
            return rgb_range
    raise MissingHyperParameter(f"cannot tell rgb_range: add_mean.bias is {ratio:.4g} x the DIV2K mean, "
                                "neither about 1 nor about 255")


def official_params(state_dict: StateDict, scale: int | None, name: str = "RCAN") -> dict:
    """RCAN's (and HAN's) constructor arguments, read off official-named weights; `scale` must agree.

    The community variants are told by their keys: no `sub_mean`/`add_mean` (norm=False, rgb_range 1), a
    head conv at `head.1` after a PixelUnshuffle (unshuffle_mod: factor sqrt(inputs / 3), x4 upsampler).
    """
    unshuffle = "head.0.weight" not in state_dict
    head = "head.1.weight" if unshuffle else "head.0.weight"
    n_feats, inputs = shape(state_dict, head)[:2]
    squeezed = shape(state_dict, "body.0.body.0.body.3.conv_du.0.weight")[0]
    reduction = n_feats // squeezed
    if n_feats // reduction != squeezed:
        raise MissingHyperParameter(f"cannot tell the reduction: {n_feats} channels squeezed to {squeezed}")
    found = upsampler_scale(state_dict, "tail.0.", identity_at_1=True)
    extra: dict = {}
    if unshuffle:
        factor = math.isqrt(inputs // 3)
        if factor * factor * 3 != inputs or found != 4 or factor not in (2, 4):
            raise MissingHyperParameter(
                f"cannot tell the unshuffle factor: {head}.weight takes {inputs} channels and the upsampler "
                f"is x{found} (unshuffle_mod has 3·k² inputs, k 2 or 4, and a x4 upsampler)"
            )
        found, extra = 4 // factor, {"unshuffle_mod": True}
    if scale not in (None, found):
        raise MissingHyperParameter(f"these {name} weights are x{found}, not x{scale}")
    norm = "add_mean.bias" in state_dict
    if not norm:
        extra["norm"] = False
    return {"n_resgroups": count_prefixed(state_dict, "body.") - 1,
            "n_resblocks": count_prefixed(state_dict, "body.0.body.") - 1,
            "n_feats": n_feats, "reduction": reduction, "scale": found,
            "rgb_range": _rgb_range(state_dict) if norm else 1.0, **extra}


def remap_keys(state_dict: StateDict) -> StateDict:
    """BasicSR's RCAN key names mapped onto the official ones; official-named weights pass through unchanged.

    BasicSR's RCAN has no mean-shift convolutions: it computes (x - mean) * 255 and y / 255 + mean with its
    defaults (img_range 255, DIV2K mean), so the equivalent `sub_mean`/`add_mean` weights are added here.
    """
    if "conv_first.weight" not in state_dict:
        return state_dict
    n_groups = count_prefixed(state_dict, "body.")
    n_blocks = count_prefixed(state_dict, "body.0.residual_group.")
    rules = (
        (r"^conv_first\.", "head.0."),
        (r"^body\.(\d+)\.residual_group\.(\d+)\.rcab\.", r"body.\1.body.\2.body."),
        (r"\.body\.3\.attention\.1\.", ".body.3.conv_du.0."),
        (r"\.body\.3\.attention\.3\.", ".body.3.conv_du.2."),
        (r"^body\.(\d+)\.conv\.", rf"body.\1.body.{n_blocks}."),
        (r"^conv_after_body\.", f"body.{n_groups}."),
        (r"^upsample\.", "tail.0."),
        (r"^conv_last\.", "tail.1."),
    )
    remapped: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        remapped[key] = tensor
    mean = torch.tensor(DIV2K_RGB_MEAN) * 255.0
    for name, bias in (("sub_mean", -mean), ("add_mean", mean)):
        remapped[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        remapped[f"{name}.bias"] = bias
    return remapped


FAMILY = Family(
    name="RCAN",
    build=RCAN,
    detect=detect,
    params_from_state_dict=official_params,
    multiple_of=1,
    scales=(1, 2, 3, 4, 8),
    supports_fp16=False,
    supports_bf16=True,
    channels_last=True,
    presets={"RCAN": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16}},
    remap_keys=remap_keys,
)
