"""The detecting loader's steps for a bare state dict, for network tests that check detection end to end."""

from __future__ import annotations

import torch

import archs


def load(state_dict: dict, scale: int | None = None) -> tuple[str, torch.nn.Module, dict]:
    """Detect, remap keys, infer hyper-parameters, build, load strictly: (family name, model, params)."""
    family = archs.detect_family(state_dict)
    state_dict = family.remap_keys(state_dict)
    params = family.params_from_state_dict(state_dict, scale)
    model = family.build(**params)
    model.load_state_dict(state_dict, strict=True)
    return family.name, model.eval(), params
