"""Train a network from a BasicSR-format options file (single process, or DDP under torchrun)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sr.commands.common import error

HELP = "train a network from YAML options"
EXAMPLES = """examples:
  sr train -opt options/train/PAN/train_PAN_x4_default.yml
  sr train -opt options/train/PAN/train_PAN_x4_default.yml --auto-resume
  sr train -opt my.yml --force-yml train:total_iter=1000 datasets:train:batch_size_per_gpu=8
  torchrun --nproc_per_node 2 -m sr train -opt my.yml
  sr train --plot experiments/PANx4_default"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-opt", "--options", help="training options (BasicSR YAML format)")
    parser.add_argument(
        "--auto-resume", action="store_true", help="continue from the newest checkpoint of this run, if any"
    )
    parser.add_argument(
        "--force-yml",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override options, e.g. train:total_iter=1000 (nested keys joined by ':')",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw curves.png when training ends")
    parser.add_argument(
        "--plot", metavar="RUN_DIR", help="only draw RUN_DIR/curves.png from its logs, then exit"
    )
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all cores)")


def run(args: argparse.Namespace) -> int:
    if args.plot:
        from sr.train.plot import plot_run

        try:
            print(plot_run(Path(args.plot)))
        except FileNotFoundError as problem:
            error(str(problem))
            return 1
        return 0
    if not args.options:
        error("train: give the options file with -opt FILE (or --plot RUN_DIR)")
        return 2
    import torch

    from sr.allocator import keep_freed_memory
    from sr.evaluate import DatasetError
    from sr.options import OptionsError, load_train_options
    from sr.train import distributed
    from sr.train.plot import plot_run
    from sr.train.trainer import Trainer, TrainError

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # CPU training: fp32 PAN x4 0.51 -> 0.62 it/s (benchmarks/RESULTS.md)
    trainer = None
    try:
        opt = load_train_options(args.options, args.force_yml)
        trainer = Trainer(opt, Path(args.options), auto_resume=args.auto_resume)
        result = trainer.run()
    except (OptionsError, DatasetError, TrainError) as problem:
        error(str(problem))
        return 1
    finally:
        if trainer is not None:
            distributed.teardown(trainer.dist)
    if trainer.dist.main and not args.no_plot:
        print(f"curves: {plot_run(result.root)}")
    return 0
