"""Upscale image files, folders or globs with a super-resolution model.

Each file either gets a complete output or none: outputs are written atomically, a file that fails is
reported on one line and the rest of the batch goes on; the exit code is 0 only if every file succeeded.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sr.commands.common import (
    add_backend_arguments,
    add_model_arguments,
    add_tiling_arguments,
    error,
    load_or_report,
)

HELP = "upscale images (files, folders or globs)"
EXAMPLES = """examples:
  sr upscale photo.png -m PAN-x4                      # writes photo_x4.png beside the input
  sr upscale photo.jpg -o big.png -m weights/PANx4_DF2K.pth
  sr upscale 'shots/*.png' -o out/ -m PANx3_DF2K.pth --scale 3 --tile 256
  sr upscale album/ -r -o out/ --format webp -m PAN-x4"""

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif", "bmp": ".bmp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument(
        "-o", "--output", help="output file (single input) or folder (default: beside each input)"
    )
    add_model_arguments(parser, required=False)
    add_backend_arguments(parser)
    add_tiling_arguments(parser)
    parser.add_argument(
        "--outscale",
        type=int,
        help="final scale below the model's, by area-averaging its output (e.g. 2 with a x4 model)",
    )
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument(
        "--format",
        choices=["same", *FORMATS],
        default="same",
        help="output format (default: same as the input)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default: 95)")
    parser.add_argument(
        "--suffix", default="_x{scale}", help="added to output names (default: _x{scale}; '' keeps the names)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


@dataclass
class Job:
    source: Path
    target: Path


def collect_inputs(patterns: list[str], recursive: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, root it was found under) per input, and one-line problems for inputs matching nothing."""
    from sr.imageio import IMAGE_EXTENSIONS

    found: list[tuple[Path, Path]] = []
    problems: list[str] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            walker = path.rglob("*") if recursive else path.glob("*")
            images = sorted(
                p for p in walker if p.suffix.lower() in IMAGE_EXTENSIONS and (p.is_file() or p.is_symlink())
            )
            if not images:
                problems.append(f"{path}: folder holds no images" + ("" if recursive else " (try -r)"))
            found += [(p, path) for p in images]
        elif path.exists() or path.is_symlink():
            found.append((path, path.parent))
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=recursive) if Path(p).is_file())
            if not matches:
                problems.append(f"{pattern}: no such file")
            found += [(p, p.parent) for p in matches]
    return found, problems


def plan_outputs(inputs: list[tuple[Path, Path]], output: str | None, fmt: str, suffix: str) -> list[Job]:
    """Where each result goes: an explicit file, a folder mirroring input sub-folders, or beside it."""
    out = Path(output) if output else None
    single_file = out is not None and len(inputs) == 1 and out.suffix != "" and not out.is_dir()
    jobs = []
    for source, root in inputs:
        if single_file:
            jobs.append(Job(source, out))
            continue
        ext = FORMATS.get(fmt, source.suffix.lower())
        name = f"{source.stem}{suffix}{ext}"
        folder = (out / source.parent.relative_to(root)) if out is not None else source.parent
        jobs.append(Job(source, folder / name))
    return jobs


def run(args: argparse.Namespace) -> int:
    if args.output and len(args.inputs) > 1 and Path(args.output).suffix and not Path(args.output).is_dir():
        error(f"-o {args.output}: several inputs need an output folder, not a file name")
        return 2
    if not 1 <= args.quality <= 100:
        error(f"--quality {args.quality}: must be between 1 and 100")
        return 2
    inputs, problems = collect_inputs(args.inputs, args.recursive)
    for problem in problems:
        error(problem)
    if not inputs:
        return 1
    net = load_or_report(args)
    if net is None:
        return 2
    from sr.upscale import check_outscale

    outscale = args.outscale or net.scale
    try:
        check_outscale(outscale, net.scale)
    except ValueError as problem:
        error(f"--outscale {outscale}: {problem}")
        return 2
    jobs = plan_outputs(inputs, args.output, args.format, args.suffix.format(scale=outscale))
    return _process(net, jobs, args, outscale, failures=len(problems))


def _process(net, jobs: list[Job], args: argparse.Namespace, outscale: int, failures: int) -> int:
    from tqdm import tqdm

    from sr.imageio import ImageError, read_image, write_image
    from sr.upscale import rescale, upscale_image

    start, done = time.perf_counter(), 0
    bar = tqdm(jobs, unit="img", desc="upscale", disable=None, file=sys.stderr)
    for job in bar:
        bar.set_postfix_str(job.source.name)
        if job.target.exists() and not args.overwrite:
            tqdm.write(
                f"sr: error: {job.target}: already exists (pass --overwrite to replace it)", file=sys.stderr
            )
            failures += 1
            continue
        try:
            image = read_image(job.source)
            tiles = tqdm(total=0, unit="tile", desc="tiles", leave=False, disable=None, file=sys.stderr)

            def report(current: int, total: int, tiles=tiles) -> None:
                tiles.total = total
                tiles.update(current - tiles.n)

            result = upscale_image(
                net, image, tile=args.tile, tile_overlap=args.tile_overlap, progress=report
            )
            tiles.close()
            result = rescale(result, outscale, net.scale)
            job.target.parent.mkdir(parents=True, exist_ok=True)
            write_image(job.target, result, quality=args.quality)
            done += 1
        except ImageError as problem:
            tqdm.write(f"sr: error: {problem}", file=sys.stderr)
            failures += 1
        except (OSError, RuntimeError) as problem:
            message = " ".join(str(problem).split())[:300]
            tqdm.write(f"sr: error: {job.source}: {message}", file=sys.stderr)
            failures += 1
    bar.close()
    elapsed = time.perf_counter() - start
    where = args.output or "beside the inputs"
    print(
        f"upscaled {done} of {done + failures} image(s) x{outscale} with {net.family} in {elapsed:.1f} s"
        f" -> {where}" + (f"; {failures} failed" if failures else "")
    )
    return 0 if failures == 0 else 1
