"""State dicts of every family, for the tests that detection tells the families apart: each family's presets
as our modules key them (the official key names), and small Swin-derived models built by the official code
(spandrel's copies), which also store the buffers ours rebuild (position indices, shift masks)."""

from __future__ import annotations

import pytest
import torch

import archs
from tests.oracles.torchvision_stub import install as install_torchvision_stub


def preset_state_dicts() -> dict[str, tuple[str, dict]]:
    """'Family/preset' → (family name, state dict) for every preset of every family, on the meta device."""
    found = {}
    for family in archs.FAMILIES:
        for name, preset in family.presets.items():
            if family.scales != (1,):  # restoration-only families take no scale
                scale = 4 if 4 in family.scales else max(family.scales)
                preset = dict(preset, scale=1 if preset.get("upsampler") == "" else scale)
            with torch.device("meta"):
                found[f"{family.name}/{name}"] = (family.name, family.build(**preset).state_dict())
    return found


def official_state_dicts() -> dict[str, dict]:
    """Family name → a tiny x2 model of SwinIR, HAT, DAT, DRCT (spandrel), SRFormer (spandrel_extra_arches)
    and RGT (not ours, but keyed like them), as the official modules key them."""
    install_torchvision_stub()
    spandrel = pytest.importorskip("spandrel", reason="spandrel (--no-deps) holds the official modules")
    extra = pytest.importorskip("spandrel_extra_arches", reason="spandrel_extra_arches holds SRFormer")
    torch.manual_seed(0)
    common = {"img_size": 16, "embed_dim": 12, "num_heads": [2], "upscale": 2, "upsampler": "pixelshuffle"}
    modules = spandrel.architectures
    models = {
        "SwinIR": modules.SwinIR.SwinIR(depths=[2], window_size=4, **common),
        "HAT": modules.HAT.HAT(depths=[2], window_size=4, compress_ratio=3, squeeze_factor=3, **common),
        "DAT": modules.DAT.DAT(depth=[2], split_size=[2, 4], **common),
        "DRCT": modules.DRCT.DRCT(depths=[2], window_size=4, gc=4, **common),
        "SRFormer": extra.architectures.SRFormer.SRFormer(depths=[2], window_size=4, **common),
        "RGT": modules.RGT.RGT(embed_dim=16, depth=[2], num_heads=[2], split_size=[4, 4], upscale=2),
    }
    return {name: model.state_dict() for name, model in models.items()}


def foreign_state_dicts(own: str) -> dict[str, dict]:
    """Every state dict above that is not family `own`'s, by label."""
    found = {label: sd for label, (family, sd) in preset_state_dicts().items() if family != own}
    found.update((f"{name} (official)", sd) for name, sd in official_state_dicts().items() if name != own)
    return found
