"""The batch runner `sr upscale` and `sr restore` share: inputs (files, folders, globs), where outputs go,
and one pass over the files through the engine.

Each file either gets a complete output or none: outputs are written atomically, a file that fails is
reported on one line and the rest of the batch goes on; the exit code is 0 only if every file succeeded.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif", "bmp": ".bmp"}


@dataclass
class Job:
    source: Path
    target: Path


def add_output_arguments(parser: argparse.ArgumentParser, suffix: str, suffix_help: str) -> None:
    parser.add_argument(
        "-o", "--output", help="output file (single input) or folder (default: beside each input)"
    )
    parser.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument(
        "--format",
        choices=["same", *FORMATS],
        default="same",
        help="output format (default: same as the input)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default: 95)")
    parser.add_argument("--suffix", default=suffix, help=suffix_help)
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def check_output_arguments(args: argparse.Namespace) -> str | None:
    """A one-line problem with the output arguments, or None."""
    if args.output and len(args.inputs) > 1 and Path(args.output).suffix and not Path(args.output).is_dir():
        return f"-o {args.output}: several inputs need an output folder, not a file name"
    if not 1 <= args.quality <= 100:
        return f"--quality {args.quality}: must be between 1 and 100"
    return None


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


def process(
    net,
    jobs: list[Job],
    args: argparse.Namespace,
    *,
    verb: str,
    finish: Callable = lambda image: image,
    failures: int = 0,
) -> tuple[int, int]:
    """Run every job through the engine (then `finish`, e.g. the --outscale resize) and write its output.

    Returns (done, failures); every failure has been reported on one line naming its file.
    """
    from tqdm import tqdm

    from sr.imageio import ImageError, read_image, write_image
    from sr.upscale import upscale_image

    done = 0
    bar = tqdm(jobs, unit="img", desc=verb, disable=None, file=sys.stderr)
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
            result = finish(result)
            job.target.parent.mkdir(parents=True, exist_ok=True)
            write_image(job.target, result, quality=args.quality)
            done += 1
        except ImageError as problem:
            tqdm.write(f"sr: error: {problem}", file=sys.stderr)
            failures += 1
        except (OSError, RuntimeError, ValueError) as problem:
            message = " ".join(str(problem).split())[:300]
            tqdm.write(f"sr: error: {job.source}: {message}", file=sys.stderr)
            failures += 1
    bar.close()
    return done, failures


@dataclass
class Plan:
    """What a command makes of a loaded model: output-name suffix, a word for the summary, a last step."""

    suffix: str
    detail: str = ""
    finish: Callable = lambda image: image


def run_batch(args: argparse.Namespace, load: Callable, prepare: Callable, *, verb: str) -> int:
    """The whole command: check arguments, collect inputs, load the model (`load(args)`), check it and plan
    (`prepare(net)` gives a Plan), process, summarise; the exit code. `load` and `prepare` return None
    after reporting a problem on one line."""
    from sr.commands.common import error

    problem = check_output_arguments(args)
    if problem:
        error(problem)
        return 2
    inputs, problems = collect_inputs(args.inputs, args.recursive)
    for problem in problems:
        error(problem)
    if not inputs:
        return 1
    net = load(args)
    plan = None if net is None else prepare(net)
    if plan is None:
        return 2
    start = time.perf_counter()
    jobs = plan_outputs(inputs, args.output, args.format, plan.suffix)
    done, failures = process(net, jobs, args, verb=verb, finish=plan.finish, failures=len(problems))
    elapsed = time.perf_counter() - start
    where = args.output or "beside the inputs"
    print(
        f"{verb}d {done} of {done + failures} image(s){plan.detail} with {net.family} in {elapsed:.1f} s"
        f" -> {where}" + (f"; {failures} failed" if failures else "")
    )
    return 0 if failures == 0 else 1
