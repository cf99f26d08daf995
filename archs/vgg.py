"""The VGG feature extractor of perceptual and GAN training losses, as BasicSR's `VGGFeatureExtractor`
(`basicsr/archs/vgg_arch.py`), reading torchvision's VGG weight files without importing torchvision.

Layers are named conv1_1, relu1_1, (bn1_1,) ..., pool5; the network is cut after the last requested layer and
its forward returns {layer name: feature map} for the requested ones.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping

import torch
from torch import nn

# torchvision's release of the ImageNet VGG19 weights (what BasicSR loads). Its file name carries the first 8
# hex digits of the file's sha256, which torchvision's hub checks (`check_hash`): a loader can verify
# `sha256.startswith(VGG19_SHA256_PREFIX)`; the full digest is not published.
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
VGG19_SHA256_PREFIX = "dcbb9e9d"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Convolutions per stage (channels 64, 128, 256, 512, 512), each stage ending with a 2x2 max pooling.
_STAGES = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_WIDTHS = (64, 128, 256, 512, 512)


def layer_names(vgg_type: str = "vgg19") -> list[str]:
    """BasicSR's layer names for `vgg_type` ('vgg11' ... 'vgg19', '_bn' variants with bn<i>_<j> after each
    convolution); position k is torchvision's `features.<k>`."""
    stages = _STAGES.get(vgg_type.removesuffix("_bn"))
    if stages is None:
        known = ", ".join(f"{t}{bn}" for t in _STAGES for bn in ("", "_bn"))
        raise ValueError(f"unknown vgg_type {vgg_type!r}; known: {known}")
    names = []
    for stage, count in enumerate(stages, 1):
        for i in range(1, count + 1):
            names += [f"conv{stage}_{i}"] + ([f"bn{stage}_{i}"] if vgg_type.endswith("_bn") else [])
            names.append(f"relu{stage}_{i}")
        names.append(f"pool{stage}")
    return names


class VGGFeatureExtractor(nn.Module):
    """BasicSR's VGGFeatureExtractor (same arguments and key names: `vgg_net.<layer>.*`, `mean`, `std`), with
    randomly initialised weights; `vgg_features` builds one with torchvision's weights.

    `use_input_norm`: inputs in [0, 1] are normalised with the ImageNet mean and std; `range_norm`: inputs in
    [-1, 1] are first mapped to [0, 1]. `requires_grad=False` freezes the weights (gradients still reach the
    input) and puts the network in eval mode. `remove_pooling` drops the max poolings; `pooling_stride` sets
    their stride (kernel 2).
    """

    def __init__(
        self,
        layer_name_list: Iterable[str],
        vgg_type: str = "vgg19",
        use_input_norm: bool = True,
        range_norm: bool = False,
        requires_grad: bool = False,
        remove_pooling: bool = False,
        pooling_stride: int = 2,
    ) -> None:
        super().__init__()
        self.layer_name_list = list(layer_name_list)
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        self.vgg_type = vgg_type
        self.names = layer_names(vgg_type)
        unknown = [name for name in self.layer_name_list if name not in self.names]
        if unknown or not self.layer_name_list:
            raise ValueError(f"{vgg_type} has no layer {unknown or '(none requested)'}; layers: {self.names}")
        last = max(self.names.index(name) for name in self.layer_name_list)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        stages = _STAGES[vgg_type.removesuffix("_bn")]
        widths = iter([width for count, width in zip(stages, _WIDTHS, strict=True) for _ in range(count)])
        channels = 3
        for name in self.names[: last + 1]:
            if name.startswith("conv"):
                width = next(widths)
                layers[name] = nn.Conv2d(channels, width, 3, padding=1)
                channels = width
            elif name.startswith("bn"):
                layers[name] = nn.BatchNorm2d(channels)
            elif name.startswith("relu"):
                layers[name] = nn.ReLU()
            elif not remove_pooling:
                layers[name] = nn.MaxPool2d(kernel_size=2, stride=pooling_stride)
        self.vgg_net = nn.Sequential(layers)
        self.vgg_net.train(requires_grad)
        self.vgg_net.requires_grad_(requires_grad)
        if use_input_norm:
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def load_torchvision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Copy torchvision's `features.<k>.*` weights into the layers kept; other keys (the classifier, the
        layers after the cut) are ignored. A missing or misshapen tensor is a ValueError naming it."""
        found, missing, misshapen = {}, [], []
        for index, name in enumerate(self.names):
            if name not in self.vgg_net._modules:
                continue
            for key, tensor in self.vgg_net._modules[name].state_dict().items():
                source = f"features.{index}.{key}"
                if source not in state_dict:
                    missing.append(source)
                elif state_dict[source].shape != tensor.shape:
                    got, wanted = tuple(state_dict[source].shape), tuple(tensor.shape)
                    misshapen.append(f"{source} {got} (expected {wanted})")
                else:
                    found[f"{name}.{key}"] = state_dict[source]
        if missing or misshapen:
            problems = (["missing " + ", ".join(missing)] if missing else []) + (
                ["wrong shape " + ", ".join(misshapen)] if misshapen else []
            )
            raise ValueError(f"not torchvision {self.vgg_type} weights: {'; '.join(problems)}")
        self.vgg_net.load_state_dict(found, strict=True)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        output = {}
        for name, layer in self.vgg_net.named_children():
            x = layer(x)
            if name in self.layer_name_list:
                output[name] = x
        return output


def vgg_features(
    weights: Mapping[str, torch.Tensor],
    layer_name_list: Iterable[str],
    vgg_type: str = "vgg19",
    use_input_norm: bool = True,
    range_norm: bool = False,
    requires_grad: bool = False,
    remove_pooling: bool = False,
    pooling_stride: int = 2,
) -> VGGFeatureExtractor:
    """A VGGFeatureExtractor holding torchvision's weights (`weights`: the state dict of torchvision's
    `vgg19-dcbb9e9d.pth` or another VGG of `vgg_type`, as read from the file by the caller)."""
    net = VGGFeatureExtractor(
        layer_name_list, vgg_type, use_input_norm, range_norm, requires_grad, remove_pooling, pooling_stride
    )
    net.load_torchvision_state_dict(weights)
    return net
