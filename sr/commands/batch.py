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
from collections import Counter
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


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    from sr.video import CODECS

    group = parser.add_argument_group(
        "videos (.mp4 .mkv .mov .avi .webm .m4v; needs PyAV: pip install 'sr[video]')"
    )
    group.add_argument("--codec", choices=tuple(CODECS), default="h264", help="video codec (default: h264)")
    group.add_argument(
        "--crf", type=int, help="quality for h264/h265/vp9, lower is better (default: the codec's)"
    )
    group.add_argument("--pix-fmt", help="output pixel format, e.g. yuv444p (default: the input's)")
    group.add_argument(
        "--resume", action="store_true", help="continue an interrupted video from its last finished segment"
    )


def check_output_arguments(args: argparse.Namespace) -> str | None:
    """A one-line problem with the output arguments, or None."""
    if args.output and len(args.inputs) > 1 and Path(args.output).suffix and not Path(args.output).is_dir():
        return f"-o {args.output}: several inputs need an output folder, not a file name"
    if not 1 <= args.quality <= 100:
        return f"--quality {args.quality}: must be between 1 and 100"
    return None


@dataclass
class Inputs:
    """What the input arguments name: (file, root it was found under) per image, one-line problems for
    arguments matching nothing, and the non-image files that folders and globs held (left out)."""

    found: list[tuple[Path, Path]]
    problems: list[str]
    skipped: list[Path]

    def skipped_line(self) -> str | None:
        """'skipped 3 non-image files (.gif 2, .svg 1)', or None when nothing was left out."""
        if not self.skipped:
            return None
        counts = Counter(p.suffix.lower() or "(no extension)" for p in self.skipped)
        kinds = ", ".join(
            f"{ext} {n}" for ext, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        )
        return f"skipped {len(self.skipped)} file(s) that are neither images nor videos ({kinds})"


def collect_inputs(patterns: list[str], recursive: bool) -> Inputs:
    """The images that files, folders and glob patterns name. Folders and globs leave out files that are
    not images by their extension (listed in `skipped`); a file named explicitly is always tried."""
    from sr.imageio import IMAGE_EXTENSIONS
    from sr.video import VIDEO_EXTENSIONS

    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    inputs = Inputs([], [], [])

    def split(files) -> list[Path]:
        files = sorted(p for p in files if p.is_file() or p.is_symlink())
        inputs.skipped.extend(p for p in files if p.suffix.lower() not in media)
        return [p for p in files if p.suffix.lower() in media]

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            images = split(path.rglob("*") if recursive else path.glob("*"))
            if not images:
                inputs.problems.append(
                    f"{path}: folder holds no images or videos" + ("" if recursive else " (try -r)")
                )
            inputs.found += [(p, path) for p in images]
        elif path.exists() or path.is_symlink():
            inputs.found.append((path, path.parent))
        else:
            matched = [Path(p) for p in glob.glob(pattern, recursive=recursive)]
            images = split(matched)
            if not matched:
                inputs.problems.append(f"{pattern}: no such file")
            elif not images:
                inputs.problems.append(f"{pattern}: matches no images or videos")
            inputs.found += [(p, p.parent) for p in images]
    return inputs


def plan_outputs(inputs: list[tuple[Path, Path]], output: str | None, fmt: str, suffix: str) -> list[Job]:
    """Where each result goes: an explicit file, a folder mirroring input sub-folders, or beside it."""
    out = Path(output) if output else None
    single_file = out is not None and len(inputs) == 1 and out.suffix != "" and not out.is_dir()
    jobs = []
    for source, root in inputs:
        if single_file:
            jobs.append(Job(source, out))
            continue
        ext = source.suffix.lower() if _is_video(source) else FORMATS.get(fmt, source.suffix.lower())
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
    refine: Callable | None = None,
    failures: int = 0,
) -> tuple[int, int]:
    """Run every job through the engine (then, for images, `refine`; then `finish`, e.g. the --outscale
    resize) and write its output: images, and videos frame by frame (`sr.video`).

    Returns (done, failures); every failure has been reported on one line naming its file.
    """
    from tqdm import tqdm

    from sr.imageio import ImageError
    from sr.video import VideoError

    done = 0
    bar = tqdm(jobs, unit="file", desc=verb, disable=None, file=sys.stderr)
    for job in bar:
        bar.set_postfix_str(job.source.name)
        if job.target.exists() and not args.overwrite:
            tqdm.write(
                f"sr: error: {job.target}: already exists (pass --overwrite to replace it)", file=sys.stderr
            )
            failures += 1
            continue
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            if _is_video(job.source):
                _video(net, job, args, finish)
            else:
                _image(net, job, args, finish, refine)
            done += 1
        except (ImageError, VideoError) as problem:
            tqdm.write(f"sr: error: {problem}", file=sys.stderr)
            failures += 1
        except ImportError as missing:  # PyAV, the video extra
            tqdm.write(f"sr: error: {job.source}: {missing}", file=sys.stderr)
            failures += 1
        except (OSError, RuntimeError, ValueError) as problem:
            message = " ".join(str(problem).split())[:300]
            tqdm.write(f"sr: error: {job.source}: {message}", file=sys.stderr)
            failures += 1
    bar.close()
    return done, failures


def _is_video(path: Path) -> bool:
    from sr.video import is_video

    return is_video(path)


def _image(net, job: Job, args: argparse.Namespace, finish: Callable, refine: Callable | None) -> None:
    from tqdm import tqdm

    from sr.commands.common import engine_dtype
    from sr.imageio import read_image, write_image
    from sr.upscale import upscale_image

    image = read_image(job.source)
    with tqdm(total=0, unit="tile", desc="tiles", leave=False, disable=None, file=sys.stderr) as tiles:

        def report(current: int, total: int) -> None:
            tiles.total = total
            tiles.update(current - tiles.n)

        dtype = engine_dtype(args)
        result = upscale_image(
            net, image, tile=args.tile, tile_overlap=args.tile_overlap, dtype=dtype, progress=report
        )
    if refine is not None:
        result.pixels = refine(result.pixels, image.pixels, job.source)
    write_image(job.target, finish(result), quality=args.quality)


def _video(net, job: Job, args: argparse.Namespace, finish: Callable) -> None:
    from tqdm import tqdm

    from sr.commands.common import engine_dtype
    from sr.upscale import upscale_image
    from sr.video import VideoSettings, process_video

    settings = VideoSettings(codec=args.codec, crf=args.crf, pix_fmt=args.pix_fmt, resume=args.resume)
    with tqdm(unit="frame", desc=job.source.name, leave=False, disable=None, file=sys.stderr) as frames:

        def report(count: int, total: int | None) -> None:
            frames.total = total
            frames.update(count - frames.n)

        dtype = engine_dtype(args)

        def transform(image):
            return finish(
                upscale_image(net, image, tile=args.tile, tile_overlap=args.tile_overlap, dtype=dtype)
            )

        process_video(job.source, job.target, transform, settings, progress=report)


@dataclass
class Plan:
    """What a command makes of a loaded model: output-name suffix, a word for the summary, a last step, and
    a step between the network and it for images (`refine(output pixels, input pixels, input path)`)."""

    suffix: str
    detail: str = ""
    finish: Callable = lambda image: image
    refine: Callable | None = None


def run_batch(args: argparse.Namespace, load: Callable, prepare: Callable, *, verb: str) -> int:
    """The whole command: check arguments, collect inputs, load the model (`load(args)`), check it and plan
    (`prepare(net)` gives a Plan), process, summarise; the exit code. `load` and `prepare` return None
    after reporting a problem on one line."""
    from sr.commands.common import error

    problem = check_output_arguments(args)
    if problem:
        error(problem)
        return 2
    inputs = collect_inputs(args.inputs, args.recursive)
    for problem in inputs.problems:
        error(problem)
    if not inputs.found:
        _note(inputs.skipped_line())
        return 1
    net = load(args)
    plan = None if net is None else prepare(net)
    if plan is None:
        return 2
    start = time.perf_counter()
    jobs = plan_outputs(inputs.found, args.output, args.format, plan.suffix)
    done, failures = process(
        net, jobs, args, verb=verb, finish=plan.finish, refine=plan.refine, failures=len(inputs.problems)
    )
    elapsed = time.perf_counter() - start
    where = args.output or "beside the inputs"
    print(
        f"{verb}d {done} of {done + failures} file(s){plan.detail} with {net.family} in {elapsed:.1f} s"
        f" -> {where}" + (f"; {failures} failed" if failures else "")
    )
    _note(inputs.skipped_line())
    return 0 if failures == 0 else 1


def _note(line: str | None) -> None:
    if line:
        print(f"sr: note: {line}", file=sys.stderr)
