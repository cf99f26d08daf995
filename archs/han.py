"""HAN, holistic attention network (Niu et al., ECCV 2020), key-compatible with the official weights.

Official code: wwlCape/HAN `src/model/han.py`: RCAN's body plus layer attention over every body output and
channel-spatial attention. Input and output are RGB in [0, 1]; inside it works in 0..rgb_range (255).
"""

from __future__ import annotations

import torch
from torch import nn

from archs.blocks import DIV2K_RGB_MEAN, MeanShift, Upsampler, default_conv
from archs.rcan import ResidualGroup, official_params
from archs.registry import Family, StateDict


class LayerAttention(nn.Module):
    """LAM: layers X (B, N, C, H, W); A = softmax(max(E) - E), E = X X^T; gamma * A X + X as (B, NC, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c, h, w = x.shape
        flat = x.reshape(b, n, c * h * w)
        energy = flat @ flat.transpose(1, 2)
        attention = torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)
        # gamma * (A X) + X with gamma folded into the N x N matrix: one output tensor instead of three.
        return torch.baddbmm(flat, attention * self.gamma, flat).view(b, n * c, h, w)


class ChannelSpatialAttention(nn.Module):
    """CSAM: x * (gamma * sigmoid(conv3d(x as a 1-channel volume))) + x, the 3x3x3 kernel spanning C, H, W."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.conv(x.unsqueeze(1))).squeeze(1)
        return x * (self.gamma * gate) + x


class HAN(nn.Module):
    """RCAN's head and body, then concat(CSAM(last body output), conv(LAM(all body outputs))), skip, tail."""

    def __init__(self, n_resgroups: int = 10, n_resblocks: int = 20, n_feats: int = 64, reduction: int = 16,
                 scale: int = 4, rgb_range: float = 255.0) -> None:
        super().__init__()
        self.rgb_range = rgb_range
        self.sub_mean = MeanShift(rgb_range, DIV2K_RGB_MEAN, sign=-1)
        self.add_mean = MeanShift(rgb_range, DIV2K_RGB_MEAN, sign=1)
        self.head = nn.Sequential(default_conv(3, n_feats, 3))
        groups = [ResidualGroup(n_feats, n_resblocks, reduction) for _ in range(n_resgroups)]
        self.body = nn.Sequential(*groups, default_conv(n_feats, n_feats, 3))
        self.csa = ChannelSpatialAttention()
        self.la = LayerAttention()
        self.last_conv = nn.Conv2d(n_feats * (n_resgroups + 1), n_feats, 3, padding=1)
        self.last = nn.Conv2d(n_feats * 2, n_feats, 3, padding=1)
        self.tail = nn.Sequential(Upsampler(scale, n_feats, identity_at_1=True), default_conv(n_feats, 3, 3))

    def _body_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every body output, stacked newest first (B, N, C, H, W) as the official loop does, and the last."""
        n = len(self.body)
        stacked = x.new_empty(x.shape[0], n, *x.shape[1:])
        for index, layer in enumerate(self.body):
            x = layer(x)
            stacked[:, n - 1 - index] = x
        return stacked, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(x * self.rgb_range))
        stacked, last = self._body_outputs(x)
        layers = self.last_conv(self.la(stacked))
        del stacked
        res = self.last(torch.cat([self.csa(last), layers], dim=1)) + x
        return self.add_mean(self.tail(res)) / self.rgb_range


_KEYS = ("la.gamma", "csa.gamma", "csa.conv.weight", "last_conv.weight", "last.weight", "head.0.weight",
         "body.0.body.0.body.3.conv_du.0.weight", "tail.1.weight", "sub_mean.weight", "add_mean.weight")


def detect(state_dict: StateDict) -> bool:
    return all(key in state_dict for key in _KEYS)


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    return official_params(state_dict, scale, name="HAN")


FAMILY = Family(
    name="HAN",
    build=HAN,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=1,
    scales=(1, 2, 3, 4, 8),
    supports_fp16=False,
    supports_bf16=False,
    channels_last=True,
    presets={"HAN": {"n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16}},
)
