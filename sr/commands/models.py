"""List the bundled and named pretrained models and the supported network families."""

from __future__ import annotations

import argparse

HELP = "list bundled and named models and network families"
EXAMPLES = "examples:\n  sr models"

BUNDLED_TEXT = {
    "default": "PAN x4 super-resolution (used by `sr upscale` without -m)",
    "denoise": "RCAN x1 colour denoising, any noise level up to 50 (`sr restore --task denoise`)",
    "jpeg": "RCAN x1 colour JPEG artifact removal, any quality from 10 (`sr restore --task jpeg`)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import archs
    from sr import zoo
    from sr.loading import BUNDLED, WEIGHTS_DIR

    print("Bundled models, trained by this project (use with -m NAME):")
    for name, filename in BUNDLED.items():
        state = "" if (WEIGHTS_DIR / filename).is_file() else "  (missing: reinstall sr)"
        print(f"  {name:<10} {BUNDLED_TEXT[name]}{state}")
    print(f"Zoo models (use with -m NAME; downloaded once, verified, cached in {zoo.models_dir()}):")
    for entry in zoo.ZOO.values():
        cached = "  cached" if (zoo.models_dir() / entry.filename).is_file() else ""
        task = zoo.TASKS[entry.task]
        licence = f", {entry.licence}" if entry.licence and entry.licence != "none stated" else ""
        print(f"  {entry.name:<22} {task} x{entry.scale}{licence}: {entry.description}{cached}")
    print("Network families (detected automatically from any weight file):")
    for family in archs.FAMILIES:
        scales = "/".join(f"x{s}" for s in family.scales)
        print(f"  {family.name:<12} {scales}")
    return 0
