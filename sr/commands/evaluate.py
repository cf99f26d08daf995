"""Evaluate a model on benchmark sets (PSNR/SSIM on Y, border = scale), from arguments or a BasicSR test YAML.

Sets are looked up as `<root>/<Set>/HR` and `<root>/<Set>/LR_bicubic/X<scale>` under --datasets-root,
$SR_DATASETS, ./datasets or ../shared/data/benchmarks, in that order.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sr.commands.common import add_model_arguments, add_tiling_arguments, error, load_or_report

HELP = "evaluate PSNR/SSIM on benchmark sets"
EXAMPLES = """examples:
  sr test -m ../shared/weights/PAN/PANx4_DF2K.pth --dataset Set5 --dataset Set14
  sr test -m PANx3_DF2K.pth --scale 3 --dataset B100 --per-image
  sr test -opt options/test/PAN/test_PAN_x4.yml
  sr test -opt options/test/PAN/test_PAN_x4.yml -m my_weights.pth --save results/"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--options", help="BasicSR-format test options (YAML)")
    add_model_arguments(parser, required=False)
    add_tiling_arguments(parser)
    parser.add_argument(
        "-d",
        "--dataset",
        action="append",
        metavar="SET",
        help="benchmark set name, repeatable (default: Set5)",
    )
    parser.add_argument("--datasets-root", help="folder holding <Set>/HR and <Set>/LR_bicubic/X<s>")
    parser.add_argument("--per-image", action="store_true", help="print every image's scores")
    parser.add_argument(
        "--save", metavar="DIR", help="save the super-resolved images as PNG under DIR/<Set>/"
    )


def run(args: argparse.Namespace) -> int:
    from sr.evaluate import DatasetError, dataset_dirs, find_pairs
    from sr.imageio import ImageError
    from sr.loading import ModelLoadError
    from sr.options import OptionsError

    try:
        if args.options:
            net, sets, crop_border, tile = _from_options(args)
            if net is None:
                return 2
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
    except (OptionsError, DatasetError, ModelLoadError, ImageError) as problem:
        error(str(problem))
        return 2
    if len(results) > 1:
        print("\nsummary " + "  ".join(f"{r.name} {r.psnr:.4f}/{r.ssim:.4f}" for r in results))
    return 0


def _from_options(args: argparse.Namespace):
    from sr.evaluate import DatasetError
    from sr.loading import load_configured_model
    from sr.options import load_test_options

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
    sets = []
    for key, dataset in opt.datasets.items():
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
    return net, sets, crop_border, tile


def _evaluate(net, name: str, pairs, args: argparse.Namespace, crop_border: int | None, tile: int | None):
    from tqdm import tqdm

    from sr.evaluate import evaluate_set

    print(f"{name} x{net.scale}  ({net.family}, {net.source}, {len(pairs)} images)")
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
        save_dir=save_dir,
        on_image=on_image,
    )
    bar.close()
    print(f"  {'mean':<16} {result.psnr:8.4f} {result.ssim:7.4f}   ({time.perf_counter() - start:.1f} s)")
    return result
