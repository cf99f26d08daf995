"""The family record every network file exports, and the errors detection raises.

A family says how to recognise its checkpoints, how to read hyper-parameters off their tensor shapes and
how to build the network; `archs/__init__.py` lists the families in detection order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]


class UnknownArchitecture(ValueError):
    """No registered family recognises a state dict."""


class MissingHyperParameter(ValueError):
    """A state dict is recognised but a setting it does not store (e.g. PAN x2 vs x3) must be given."""


@dataclass(frozen=True)
class Family:
    """One network family: detection, shape-based hyper-parameter inference and construction.

    `params_from_state_dict(state_dict, scale)` returns the constructor's keyword arguments; `scale` is the
    caller's hint (None when unknown) and is used only where the weights cannot tell the scale.
    """

    name: str
    build: Callable[..., nn.Module]
    detect: Callable[[StateDict], bool]
    params_from_state_dict: Callable[[StateDict, int | None], dict]
    multiple_of: int = 1
    scales: tuple[int, ...] = (2, 3, 4)
    supports_fp16: bool = False
    supports_bf16: bool = True
    # Convolution-bound networks the engine runs with NHWC (channels_last) weights and inputs: faster on
    # CPU (PAN 2.1x, A2N 1.6x, CAMixerSR 1.4x, RCAN/HAN/SwinIR 1.1-1.2x; benchmarks/RESULTS.md), the same
    # output within 1e-6 on trained weights (tests/test_upscale_engine.py).
    channels_last: bool = False
    presets: Mapping[str, dict] = field(default_factory=dict)
    # Buffers recomputed at run time (masks that depend on the training patch size): dropped before loading.
    ignored_keys: Callable[[str], bool] = lambda key: False
    # Constructor arguments no checkpoint holds, inferred by a stated rule: a file's metadata or its zoo entry
    # overrides them (SwinIR's img_range).
    unstored: tuple[str, ...] = ()
    # Maps other projects' key names for the same network (e.g. BasicSR's RCAN) onto this family's names.
    remap_keys: Callable[[StateDict], StateDict] = lambda state_dict: state_dict


def shape(state_dict: StateDict, key: str) -> tuple[int, ...]:
    """Shape of a tensor in a state dict, as a tuple."""
    return tuple(state_dict[key].shape)


def count_prefixed(state_dict: StateDict, prefix: str) -> int:
    """Number of distinct integer indices N among keys starting with `prefix` + 'N.'."""
    indices = set()
    for key in state_dict:
        if key.startswith(prefix):
            head = key[len(prefix) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    return len(indices)
