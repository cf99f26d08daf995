"""Upscale image and video files, folders or globs with a super-resolution model.

Each file either gets a complete output or none: outputs are written atomically, a file that fails is
reported on one line and the rest of the batch goes on; the exit code is 0 only if every file succeeded.
Restoration models (scale 1: denoising, JPEG artifact removal) belong to `sr restore`.
"""

from __future__ import annotations

import argparse

from sr.commands.batch import Plan, add_output_arguments, add_video_arguments, run_batch
from sr.commands.common import (
    add_backend_arguments,
    add_engine_arguments,
    add_model_arguments,
    error,
    load_or_report,
)

HELP = "upscale images (files, folders or globs)"
EXAMPLES = """examples:
  sr upscale photo.png -m PAN-x4                      # writes photo_x4.png beside the input
  sr upscale photo.jpg -o big.png -m weights/PANx4_DF2K.pth
  sr upscale 'shots/*.png' -o out/ -m PANx3_DF2K.pth --scale 3 --tile 256
  sr upscale album/ -r -o out/ --format webp -m PAN-x4"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns"
    )
    add_model_arguments(parser, required=False)
    add_backend_arguments(parser)
    add_engine_arguments(parser)
    parser.add_argument(
        "--outscale",
        type=int,
        help="final scale below the model's, by area-averaging its output (e.g. 2 with a x4 model)",
    )
    add_output_arguments(
        parser, "_x{scale}", "added to output names (default: _x{scale}; '' keeps the names)"
    )
    add_video_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return run_batch(args, load_or_report, lambda net: _plan(net, args), verb="upscale")


def _plan(net, args: argparse.Namespace) -> Plan | None:
    from sr.upscale import check_outscale, rescale

    if net.scale == 1:
        error(
            f"{net.source}: a scale-1 restoration model (denoising or JPEG artifact removal) does not "
            "upscale: use `sr restore`"
        )
        return None
    outscale = args.outscale or net.scale
    try:
        check_outscale(outscale, net.scale)
    except ValueError as problem:
        error(f"--outscale {outscale}: {problem}")
        return None
    return Plan(
        args.suffix.format(scale=outscale), f" x{outscale}", lambda image: rescale(image, outscale, net.scale)
    )
