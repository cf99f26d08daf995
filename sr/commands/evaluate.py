"""Evaluate a model on test sets.

Super-resolution (default `--task sr`): PSNR/SSIM on Y with border = scale, from arguments or a BasicSR
test YAML; sets are `<root>/<Set>/HR` and `<root>/<Set>/LR_bicubic/X<scale>` under --datasets-root,
$SR_DATASETS, ./datasets or ../shared/data/benchmarks, in that order.

Restoration (`--task denoise` with `--sigma`, `--task jpeg` with `--quality`): each clean image is degraded
as SwinIR's official test script does (seeded noise, unclipped; OpenCV JPEG) and scored on all channels
(RGB or gray) without a border: PSNR/SSIM, plus PSNR-B for JPEG; the degraded input's scores are printed
beside the model's. JPEG results are held to the encoding's quantisation intervals (`sr.jpeg_constraint`,
as `sr restore --task jpeg` does) unless --no-jpeg-constraint asks for the network's own output. Sets are
`<root>/<Set>` (or its HR folder) under --datasets-root, $SR_DATASETS, ./datasets, ../shared/data/restoration
or ../shared/data/benchmarks; BSD68 is derived from CBSD68.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from sr.commands.common import (
    add_engine_arguments,
    add_jpeg_constraint_argument,
    add_model_arguments,
    engine_dtype,
    error,
    load_or_report,
)

HELP = "evaluate PSNR/SSIM on benchmark sets (super-resolution, denoising, JPEG)"
EXAMPLES = """examples:
  sr test -m ../shared/weights/PAN/PANx4_DF2K.pth --dataset Set5 Set14
  sr test -m PANx3_DF2K.pth --scale 3 --dataset B100 --per-image
  sr test -opt options/test/PAN/test_PAN_x4.yml
  sr test -opt options/test/PAN/test_PAN_x4.yml -m my_weights.pth --save results/
  sr test --task denoise --sigma 15 25 50 --dataset CBSD68 Set12 Urban100
  sr test --task jpeg --quality 10 20 30 40 --dataset Classic5 LIVE1_gray
  sr test --task denoise --sigma 25 -m SwinIR-grayDN-s25 --dataset BSD68 Set12"""

DEFAULT_SETS = {"sr": ["Set5"], "denoise": ["CBSD68"], "jpeg": ["Classic5", "LIVE1_gray"]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--options", help="BasicSR-format test options (YAML)")
    parser.add_argument(
        "--task",
        choices=tuple(DEFAULT_SETS),
        default="sr",
        help="sr (default), denoise or jpeg; denoise and jpeg default to the bundled model of the task",
    )
    add_model_arguments(parser, required=False, default="the bundled model of --task denoise|jpeg")
    add_engine_arguments(parser)
    parser.add_argument(
        "-d",
        "--dataset",
        nargs="+",
        action="extend",
        metavar="SET",
        help="test set names (default: Set5; CBSD68 for denoise; Classic5 LIVE1_gray for jpeg)",
    )
    parser.add_argument(
        "--sigma", nargs="+", type=float, help="noise levels for --task denoise (0..255 scale)"
    )
    parser.add_argument(
        "--clip-noise",
        action="store_true",
        help="clip and round noisy inputs to 8 bits, as saved photos are (the papers' protocol does not)",
    )
    parser.add_argument("--quality", nargs="+", type=int, help="JPEG qualities for --task jpeg (1-100)")
    add_jpeg_constraint_argument(parser, "with --task jpeg each restored image")
    parser.add_argument("--datasets-root", help="folder holding the test sets")
    parser.add_argument("--per-image", action="store_true", help="print every image's scores")
    parser.add_argument("--save", metavar="DIR", help="save the output images as PNG under DIR/<Set>/")


def run(args: argparse.Namespace) -> int:
    from sr.evaluate import DatasetError, dataset_dirs, find_pairs
    from sr.imageio import ImageError
    from sr.loading import ModelLoadError
    from sr.options import OptionsError

    if args.task != "sr":
        return _run_restoration(args)
    for flag, value in (
        ("--sigma", args.sigma),
        ("--quality", args.quality),
        ("--clip-noise", args.clip_noise),
        ("--no-jpeg-constraint", args.no_jpeg_constraint and not args.options),
    ):
        if value:
            error(f"{flag}: only for --task denoise or jpeg")
            return 2
    restoration = []
    try:
        if args.options:
            net, sets, restoration, crop_border, tile = _from_options(args)
        else:
            if not args.model:
                error("give a model (-m) or an options file (-opt)")
                return 2
            net = load_or_report(args)
            if net is None:
                return 2
            names = args.dataset or ["Set5"]
            sets = [(n, *dataset_dirs(n, net.scale, args.datasets_root), "{}") for n in names]
            crop_border, tile = None, args.tile
        results = []
        for name, hr_dir, lr_dir, tmpl in sets:
            pairs = find_pairs(hr_dir, lr_dir, tmpl)
            results.append(_evaluate(net, name, pairs, args, crop_border, tile))
        restored = [_evaluate_restoration(net, test_set, task, args, tile) for test_set, task in restoration]
    except (OptionsError, DatasetError, ModelLoadError, ImageError, ValueError) as problem:
        error(str(problem))
        return 2
    if len(results) > 1:
        print("\nsummary " + "  ".join(f"{r.name} {r.psnr:.4f}/{r.ssim:.4f}" for r in results))
    _summary(restored)
    return 0


def _from_options(args: argparse.Namespace):
    from sr.evaluate import DatasetError
    from sr.loading import load_configured_model
    from sr.options import load_test_options
    from sr.tasks import options_set

    opt = load_test_options(args.options)
    network = opt.network_g
    weights = args.model or opt.path.pretrain_network_g
    if not weights:
        raise DatasetError(f"{args.options}: path.pretrain_network_g is not set (or pass -m)")
    params = dict(network.args)
    params.setdefault("scale", opt.scale)
    net = load_configured_model(
        network.type, params, weights, opt.path.param_key_g, opt.path.strict_load_g, device=args.device
    )
    sets, restoration = [], []
    for key, dataset in opt.datasets.items():
        if dataset.type == "DegradedHRDataset":
            restoration.append(options_set(dataset, f"{args.options}: datasets.{key}"))
            continue
        if not dataset.dataroot_gt or not dataset.dataroot_lq:
            raise DatasetError(f"{args.options}: datasets.{key}: needs dataroot_gt and dataroot_lq")
        hr, lr = Path(dataset.dataroot_gt), Path(dataset.dataroot_lq)
        for folder in (hr, lr):
            if not folder.is_dir():
                raise DatasetError(
                    f"{args.options}: datasets.{key}: folder {folder} not found (see datasets/README.md)"
                )
        sets.append((dataset.name, hr, lr, dataset.filename_tmpl))
    metric = next(iter(opt.val.metrics.values()), None)
    crop_border = opt.crop_border if opt.crop_border is not None else (metric.crop_border if metric else None)
    tile = args.tile if args.tile is not None else (opt.tile.tile_size if opt.tile else None)
    if restoration and net.scale != 1:
        raise ValueError(f"{args.options}: DegradedHRDataset sets need a scale-1 model, not x{net.scale}")
    return net, sets, restoration, crop_border, tile


def _evaluate(net, name: str, pairs, args: argparse.Namespace, crop_border: int | None, tile: int | None):
    from tqdm import tqdm

    from sr.evaluate import evaluate_set

    print(f"{name} x{net.scale}  ({net.family}, {net.source}, {len(pairs)} images)")
    if pairs and pairs[0][2] is None:
        print(f"  no LR_bicubic/X{net.scale} folder: LR made from the HR by MATLAB-exact bicubic downscaling")
    if args.per_image:
        print(f"  {'image':<16} {'PSNR-Y':>8} {'SSIM-Y':>7}")
    bar = tqdm(total=len(pairs), unit="img", desc=name, leave=False, disable=None, file=sys.stderr)

    def on_image(score) -> None:
        bar.update()
        if args.per_image:
            tqdm.write(f"  {score.name:<16} {score.psnr:8.4f} {score.ssim:7.4f}")

    start = time.perf_counter()
    save_dir = Path(args.save) / name if args.save else None
    result = evaluate_set(
        net,
        name,
        pairs,
        crop_border=crop_border,
        tile=tile,
        tile_overlap=args.tile_overlap,
        dtype=engine_dtype(args),
        save_dir=save_dir,
        on_image=on_image,
    )
    bar.close()
    print(f"  {'mean':<16} {result.psnr:8.4f} {result.ssim:7.4f}   ({time.perf_counter() - start:.1f} s)")
    return result


def _tasks(args: argparse.Namespace) -> list:
    """The degradations asked for, or a ValueError naming the bad argument."""
    from sr.tasks import JPEG, Denoise

    if args.options:
        raise ValueError("-opt: test options describe super-resolution sets; use --task sr")
    if args.task == "denoise":
        if args.no_jpeg_constraint:
            raise ValueError("--no-jpeg-constraint: only for --task jpeg")
        if args.quality:
            raise ValueError("--quality: only for --task jpeg (denoising takes --sigma)")
        try:
            return [Denoise(sigma, args.clip_noise) for sigma in args.sigma or [25]]
        except ValueError as problem:
            raise ValueError(f"--sigma: {problem}") from None
    if args.sigma or args.clip_noise:
        raise ValueError("--sigma/--clip-noise: only for --task denoise (JPEG takes --quality)")
    try:
        return [JPEG(quality, not args.no_jpeg_constraint) for quality in args.quality or [10]]
    except ValueError as problem:
        raise ValueError(f"--quality: {problem}") from None


def _run_restoration(args: argparse.Namespace) -> int:
    from sr.evaluate import DatasetError
    from sr.imageio import ImageError
    from sr.tasks import find_set

    try:
        tasks = _tasks(args)
        sets = [find_set(name, args.datasets_root) for name in args.dataset or DEFAULT_SETS[args.task]]
    except (ValueError, DatasetError) as problem:
        error(str(problem))
        return 2
    args.model = args.model or args.task
    net = load_or_report(args)
    if net is None:
        return 2
    if net.scale != 1:
        error(
            f"{net.source}: a x{net.scale} super-resolution model; --task {args.task} needs a scale-1 model"
        )
        return 2
    results = []
    try:
        for test_set in sets:
            for task in tasks:
                results.append(_evaluate_restoration(net, test_set, task, args, args.tile))
    except (DatasetError, ImageError, ValueError) as problem:
        error(str(problem))
        return 2
    _summary(results)
    return 0


def _summary(results: list) -> None:
    if len(results) > 1:
        print("\nsummary (input -> restored)")
        for r in results:
            before, after = r.mean("degraded"), r.mean("restored")
            scores = "  ".join(f"{m} {_input(m, before[m])} -> {after[m]:.4f}" for m in r.task.metrics)
            print(f"  {r.name:<12} {r.task.label:<28} {scores}")


def _input(metric: str, value: float) -> str:
    """A degraded input's score as papers print it: SSIM to 4 decimals, PSNR and PSNR-B to 2."""
    return f"{value:.4f}" if metric == "ssim" else f"{value:.2f}"


def _evaluate_restoration(net, test_set, task, args: argparse.Namespace, tile: int | None):
    from tqdm import tqdm

    from sr.tasks import JPEG, evaluate_restoration

    if isinstance(task, JPEG) and args.no_jpeg_constraint:  # also for an options file's JPEG sets
        task = dataclasses.replace(task, constrained=False)
    kind = "gray" if net.in_channels == 1 else "colour"
    print(
        f"{test_set.name} {task.name} {task.label}  ({net.family} {kind}, {net.source}, "
        f"{len(test_set.files)} images)"
    )
    names = {"psnr": "PSNR", "ssim": "SSIM", "psnrb": "PSNR-B"}
    header = " ".join(f"{names[m]:>7}" for m in task.metrics)
    print(f"  {'image':<16} {'input: ' + header:>30}   {'restored: ' + header:>32}")
    bar = tqdm(
        total=len(test_set.files), unit="img", desc=test_set.name, leave=False, disable=None, file=sys.stderr
    )

    def line(name: str, before: dict, after: dict) -> str:
        row = [f"{_input(m, before[m]):>7}" for m in task.metrics]
        out = [f"{after[m]:7.4f}" for m in task.metrics]
        return f"  {name:<16} {' '.join(row):>30}   {' '.join(out):>32}"

    def on_image(scores) -> None:
        bar.update()
        if args.per_image:
            tqdm.write(line(scores.name, scores.degraded, scores.restored))

    start = time.perf_counter()
    save_dir = (
        Path(args.save) / test_set.name / f"{task.name}_{task.label.split(',')[0].replace(' ', '')}"
        if args.save
        else None
    )
    result = evaluate_restoration(
        net,
        test_set,
        task,
        tile=tile,
        tile_overlap=args.tile_overlap,
        dtype=engine_dtype(args),
        save_dir=save_dir,
        on_image=on_image,
    )
    bar.close()
    print(
        line("mean", result.mean("degraded"), result.mean("restored"))
        + f"   ({time.perf_counter() - start:.1f} s)"
    )
    return result
