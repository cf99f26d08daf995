"""Restore image and video files, folders or globs with a scale-1 model: denoising or JPEG artifact removal.

`--task` picks the bundled model for the task (both colour and blind: any noise level up to 50, any JPEG
quality from 10 up); `-m` takes any scale-1 model (a file, or a zoo name such as SwinIR-colorDN-s25). Batch
semantics are `sr upscale`'s: each file gets a complete output or none, a file that fails is reported on one
line and the rest go on, and the exit code is 0 only if every file succeeded. Gray models take gray images:
a colour image given to one is an error for that file (convert it to gray first).

With `--task jpeg`, each JPEG input's restored luma is held to the quantisation intervals stored in the file
(`sr.jpeg_constraint`: the result never moves further from the original image than the network's output,
and high-quality files keep their detail); `--no-jpeg-constraint` keeps the network's output as it is.
"""

from __future__ import annotations

import argparse

from sr.commands.batch import Plan, add_output_arguments, add_video_arguments, run_batch
from sr.commands.common import (
    add_backend_arguments,
    add_engine_arguments,
    add_jpeg_constraint_argument,
    add_model_arguments,
    error,
    load_or_report,
)

HELP = "restore images: denoise, remove JPEG artifacts (files, folders or globs)"
EXAMPLES = """examples:
  sr restore noisy.png --task denoise                 # writes noisy_denoised.png beside the input
  sr restore photo.jpg --task jpeg --format png       # photo_dejpeg.png, lossless
  sr restore scans/ -r -o clean/ --task denoise --tile 256
  sr restore gray.png -m SwinIR-grayDN-s25            # an official model from the zoo (`sr models`)"""

TASKS = {"denoise": "_denoised", "jpeg": "_dejpeg"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image or video files, folders or glob patterns"
    )
    parser.add_argument(
        "--task", choices=tuple(TASKS), help="use the bundled model for this task (or give one with -m)"
    )
    add_model_arguments(parser, required=False, scale=False, default="the bundled model of --task")
    add_backend_arguments(parser)
    add_engine_arguments(parser)
    add_jpeg_constraint_argument(parser, "with --task jpeg each JPEG file's result")
    add_output_arguments(
        parser, "", "added to output names (default: _denoised or _dejpeg for --task, else _restored)"
    )
    add_video_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if not args.model and not args.task:
        error("restore: give --task denoise|jpeg (a bundled model) or a scale-1 model with -m")
        return 2
    if args.no_jpeg_constraint and args.task != "jpeg":
        error("--no-jpeg-constraint: only with --task jpeg")
        return 2
    args.model = args.model or args.task
    return run_batch(args, load_or_report, lambda net: _plan(net, args), verb="restore")


def _plan(net, args: argparse.Namespace) -> Plan | None:
    from sr.jpeg_constraint import project_file

    if net.scale != 1:
        error(
            f"{net.source}: a x{net.scale} super-resolution model does not restore at scale 1: "
            "use `sr upscale`"
        )
        return None
    suffix = args.suffix or (TASKS[args.task] if args.task and args.model == args.task else "_restored")
    if args.task == "jpeg" and not args.no_jpeg_constraint:
        return Plan(suffix, " (JPEG inputs held to their quantisation intervals)", refine=project_file)
    return Plan(suffix)
