"""A2N, attention in attention network (Chen, Gu and Zhang, 2021), key-compatible with the official weights.

Official code: haoyuc/A2N `code/model/aan.py` (EDSR-PyTorch code base: the network works on 0..255). Here
the input and output are RGB in [0, 1]; the network scales to 0..255 and back inside `forward`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archs.pan import add_pa_reconstruction, pa_reconstruct
from archs.registry import Family, MissingHyperParameter, StateDict, count_prefixed, shape

RGB_RANGE = 255.0  # the range the official weights were trained on (EDSR-PyTorch's rgb_range)
BRANCHES = 2  # the attention dropout module weighs an attention and a non-attention branch
TEMPERATURE = 30.0  # softmax temperature of those weights (the official `t`)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class AttentionBranch(nn.Module):
    """The attention branch k4(k3(y) * sigmoid(k2(lrelu(k1(y))))): 3x3 convolutions without bias and a 1x1
    gate with bias. `AAB` runs k1 and k3 in one convolution with its non-attention branch, then `finish`."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.k1 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, padding=1, bias=False)

    def finish(self, k1_y: torch.Tensor, k3_y: torch.Tensor) -> torch.Tensor:
        """The branch's output from k1(y) and k3(y)."""
        return self.k4(k3_y * torch.sigmoid(self.k2(_lrelu(k1_y))))


class AAB(nn.Module):
    """Attention in attention block: an attention and a non-attention branch mixed per image by softmax
    weights that the attention dropout module `ADM` computes from pooled features.

    `non_attention_kernel` 3 is A2N; 1 is the authors' A2N-M variant (a 1x1 non-attention convolution).
    """

    def __init__(self, nf: int, reduction: int = 4, non_attention_kernel: int = 3) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(nf, nf, 1, bias=False)
        self.conv_last = nn.Conv2d(nf, nf, 1, bias=False)
        self.ADM = nn.Sequential(
            nn.Linear(nf, nf // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(nf // reduction, BRANCHES, bias=False),
        )
        self.attention = AttentionBranch(nf)
        self.non_attention = nn.Conv2d(
            nf, nf, non_attention_kernel, padding=non_attention_kernel // 2, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _lrelu(self.conv_first(x))
        weights = torch.softmax(self.ADM(y.mean((2, 3))) / TEMPERATURE, dim=1)[:, :, None, None]
        # The 3x3 convolutions that all read y run as one (about 14% faster on CPU, same values).
        branch = self.attention
        kernels = [branch.k1.weight, branch.k3.weight]
        fused_plain = self.non_attention.kernel_size == (3, 3)
        if fused_plain:
            kernels.append(self.non_attention.weight)
        outputs = F.conv2d(y, torch.cat(kernels), padding=1).chunk(len(kernels), dim=1)
        plain = outputs[2] if fused_plain else self.non_attention(y)
        mixed = branch.finish(outputs[0], outputs[1]) * weights[:, 0:1] + plain * weights[:, 1:2]
        return self.conv_last(_lrelu(mixed)) + x


class A2N(nn.Module):
    """A2N: `nb` AABs of `nf` channels, then PAN's nearest-upsampling + pixel-attention reconstruction of
    `unf` channels plus the bilinearly upsampled input. Takes and gives images in [0, 1]."""

    def __init__(
        self,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 40,
        unf: int = 24,
        nb: int = 16,
        scale: int = 4,
        reduction: int = 4,
        non_attention_kernel: int = 3,
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"A2N supports scales 2, 3 and 4, not {scale}")
        if non_attention_kernel not in (1, 3):
            raise ValueError(f"non_attention_kernel is 3 (A2N) or 1 (A2N-M), not {non_attention_kernel}")
        self.scale = scale
        self.conv_first = nn.Conv2d(in_nc, nf, 3, padding=1)
        self.AAB_trunk = nn.Sequential(*(AAB(nf, reduction, non_attention_kernel) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        add_pa_reconstruction(self, nf, unf, out_nc, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * RGB_RANGE
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.AAB_trunk(fea))
        return pa_reconstruct(self, fea, x) / RGB_RANGE


# The AAB's own modules (ADM, both branches) on top of the PAN-style head and reconstruction.
FINGERPRINT = (
    "conv_first.weight",
    "AAB_trunk.0.ADM.0.weight",
    "AAB_trunk.0.attention.k1.weight",
    "AAB_trunk.0.non_attention.weight",
    "upconv1.weight",
    "att1.conv.weight",
)


def detect(state_dict: StateDict) -> bool:
    return all(key in state_dict for key in FINGERPRINT)


def params_from_state_dict(state_dict: StateDict, scale: int | None) -> dict:
    nf, in_nc = shape(state_dict, "conv_first.weight")[:2]
    unf = shape(state_dict, "upconv1.weight")[0]
    out_nc = shape(state_dict, "conv_last.weight")[0]
    nb = count_prefixed(state_dict, "AAB_trunk.")
    hidden = shape(state_dict, "AAB_trunk.0.ADM.0.weight")[0]
    reduction = nf // hidden
    if nf // reduction != hidden:
        raise MissingHyperParameter(f"cannot tell A2N's reduction: its ADM maps {nf} channels to {hidden}")
    branches = shape(state_dict, "AAB_trunk.0.ADM.2.weight")[0]
    if branches != BRANCHES:
        raise MissingHyperParameter(f"A2N's ADM weighs {BRANCHES} branches, these weights have {branches}")
    non_attention_kernel = shape(state_dict, "AAB_trunk.0.non_attention.weight")[-1]
    if "upconv2.weight" in state_dict:
        if scale not in (None, 4):
            raise MissingHyperParameter(f"these A2N weights are x4, not x{scale}")
        scale = 4
    elif scale is None:
        raise MissingHyperParameter(
            "A2N x2 and x3 weights are identical in shape; give the scale (--scale 2 or --scale 3)"
        )
    elif scale not in (2, 3):
        raise MissingHyperParameter(f"these A2N weights are x2 or x3, not x{scale}")
    return dict(
        in_nc=in_nc,
        out_nc=out_nc,
        nf=nf,
        unf=unf,
        nb=nb,
        scale=scale,
        reduction=reduction,
        non_attention_kernel=non_attention_kernel,
    )


FAMILY = Family(
    name="A2N",
    build=A2N,
    detect=detect,
    params_from_state_dict=params_from_state_dict,
    multiple_of=1,
    scales=(2, 3, 4),
    supports_fp16=False,
    supports_bf16=True,
    channels_last=True,
    presets={"A2N": {"nf": 40, "unf": 24, "nb": 16}},
)
