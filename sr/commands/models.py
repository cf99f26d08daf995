"""List the named pretrained models and the supported network families."""

from __future__ import annotations

import argparse

HELP = "list named models and network families"
EXAMPLES = "examples:\n  sr models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import archs
    from sr import zoo
    from sr.loading import DEFAULT_MODEL, DEFAULT_NAME

    state = "bundled" if DEFAULT_MODEL.is_file() else "missing"
    print(f"Default model (used without -m, or -m {DEFAULT_NAME}): PAN x4 trained by this project, {state}")
    print(f"Named models (use with -m NAME; downloaded once, sha256-verified, cached in {zoo.models_dir()}):")
    for entry in zoo.ZOO.values():
        cached = "cached" if (zoo.models_dir() / entry.filename).is_file() else ""
        print(f"  {entry.name:<12} x{entry.scale}  {entry.description}  {cached}")
    print("Network families (detected automatically from any weight file):")
    for family in archs.FAMILIES:
        scales = "/".join(f"x{s}" for s in family.scales)
        print(f"  {family.name:<12} {scales}")
    return 0
