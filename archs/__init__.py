"""Super-resolution networks and the explicit registry that detects them from checkpoints.

Families are listed in detection order: more specific detections come first (HAN before RCAN, HAT before
SwinIR), so the first family whose `detect` accepts a state dict owns it.
"""

from __future__ import annotations

from archs import (
    a2n,
    camixer,
    cfsr,
    dat,
    dlgsanet,
    drct,
    han,
    hat,
    histoformer,
    hogformer,
    pan,
    rcan,
    rrdbnet,
    srformer,
    swinir,
)
from archs.registry import Family, MissingHyperParameter, StateDict, UnknownArchitecture

FAMILIES: tuple[Family, ...] = (
    han.FAMILY, rcan.FAMILY, hat.FAMILY, drct.FAMILY, srformer.FAMILY, swinir.FAMILY, dat.FAMILY,
    camixer.FAMILY, cfsr.FAMILY, pan.FAMILY, a2n.FAMILY, hogformer.FAMILY, histoformer.FAMILY,
    dlgsanet.FAMILY, rrdbnet.FAMILY,
)


def get_family(name: str) -> Family:
    """The family registered under `name` (case-insensitive)."""
    for family in FAMILIES:
        if family.name.lower() == name.lower():
            return family
    raise KeyError(f"unknown network family {name!r}; known: {', '.join(f.name for f in FAMILIES)}")


def detect_family(state_dict: StateDict) -> Family:
    """The first family, in registry order, that recognises `state_dict`."""
    for family in FAMILIES:
        if family.detect(state_dict):
            return family
    tried = ", ".join(f.name for f in FAMILIES)
    raise UnknownArchitecture(f"weights match no known network (tried {tried})")


__all__ = [
    "FAMILIES",
    "Family",
    "MissingHyperParameter",
    "StateDict",
    "UnknownArchitecture",
    "detect_family",
    "get_family",
]
