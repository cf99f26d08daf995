"""Training throughput (it/s) of PAN x4 at the default options' batch and patch size, through the real
trainer (data loader, loss, Adam, EMA), on this machine's CPU threads.

Baseline and candidate run side by side in one process: fp32 (the baseline) against bf16 autocast with
channels-last memory (what options/train/PAN/train_PAN_x4_default.yml uses). The ratio is printed.

    python -m benchmarks.train_speed [--iters 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sr.options import load_train_options
from sr.train.trainer import Trainer

OPTIONS = Path(__file__).resolve().parents[1] / "options" / "train" / "PAN" / "train_PAN_x4_default.yml"


def iterations_per_second(overrides: list[str], iters: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        opt = load_train_options(OPTIONS, [f"path:experiments_root={root}", "val:val_freq=~", *overrides])
        trainer = Trainer(opt, OPTIONS)
        batches = iter(trainer.loader)
        for i in range(1, warmup + 1):
            trainer._step(next(batches), i)
        start = time.perf_counter()
        for i in range(warmup + 1, warmup + iters + 1):
            trainer._step(next(batches), i)
        return iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    opt = load_train_options(OPTIONS)
    data = opt.datasets["train"]
    print(f"PAN x4, batch {data.batch_size_per_gpu}, HR patch {data.gt_size} (LR {data.gt_size // 4}), "
          f"{args.threads} threads, {args.iters} iterations after {args.warmup} warm-up")
    fp32 = iterations_per_second(["train:amp=~", "train:channels_last=false"], args.iters, args.warmup)
    bf16 = iterations_per_second([], args.iters, args.warmup)
    print(f"fp32 (baseline)            {fp32:6.2f} it/s  {1 / fp32:6.3f} s/it")
    print(f"bf16 + channels_last       {bf16:6.2f} it/s  {1 / bf16:6.3f} s/it  ({bf16 / fp32:.2f}x)")


if __name__ == "__main__":
    main()
