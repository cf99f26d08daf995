"""Float64 transcription of torchvision's VGG19 `features` (a chain of 3x3 convolutions, ReLUs and 2x2 max
poolings) with BasicSR's input normalisation and layer names, reading torchvision-keyed weights
(`features.<k>.weight/bias`); written from BasicSR 8d56e3a `basicsr/archs/vgg_arch.py` and torchvision's
VGG19 configuration, without `archs` or torchvision imports."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# torchvision's cfg "E": convolutions per stage (64, 128, 256, 512, 512 channels, as the weights say), each
# stage ending with a 2x2 max pooling.
VGG19_CONVS_PER_STAGE = (2, 2, 4, 4, 4)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def max_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """2x2 windows every `stride` pixels, no padding, incomplete windows dropped."""
    return x.unfold(2, 2, stride).unfold(3, 2, stride).amax(dim=(-2, -1))


def vgg19_features(
    sd: dict[str, torch.Tensor],
    x: torch.Tensor,
    use_input_norm: bool = True,
    range_norm: bool = False,
    pooling_stride: int = 2,
    remove_pooling: bool = False,
) -> dict[str, torch.Tensor]:
    """Every layer's output by BasicSR's name (conv<s>_<i>, relu<s>_<i>, pool<s>), in float64."""
    x = x.double()
    if range_norm:
        x = (x + 1) / 2
    if use_input_norm:
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
        x = (x - mean) / torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    out = {}
    index = 0  # torchvision's features.<index>: conv, relu, ..., pool
    for stage, convs in enumerate(VGG19_CONVS_PER_STAGE, 1):
        for conv in range(1, convs + 1):
            weight, bias = sd[f"features.{index}.weight"].double(), sd[f"features.{index}.bias"].double()
            x = F.conv2d(x, weight, bias, padding=1)
            out[f"conv{stage}_{conv}"] = x
            x = x.clamp_min(0)
            out[f"relu{stage}_{conv}"] = x
            index += 2
        if not remove_pooling:
            x = max_pool(x, pooling_stride)
            out[f"pool{stage}"] = x
        index += 1
    return out
