"""Training logs on rank 0: per-iteration CSV, validation CSV, TensorBoard events, a text log and progress.

On resume, rows after the resumed iteration (written by the interrupted run after its last checkpoint) are
dropped, so the CSVs and TensorBoard describe one continuous run.
"""

from __future__ import annotations

import csv
import sys
import time
from datetime import timedelta
from pathlib import Path

TRAIN_FIELDS = ("iter", "epoch", "loss", "lr", "it_per_s")
VAL_FIELDS = ("iter", "dataset", "metric", "value")


def _truncate(path: Path, fields: tuple[str, ...], last_iter: int) -> None:
    rows = []
    if path.is_file():
        with path.open(newline="") as handle:
            rows = [
                r
                for r in csv.DictReader(handle)
                if r.get("iter", "").isdigit() and int(r["iter"]) <= last_iter
            ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class TrainLog:
    """Writes train_log.csv, val_log.csv, train.log and TensorBoard events under the experiment folder."""

    def __init__(
        self, root: Path, *, start_iter: int, total_iter: int, print_freq: int, tensorboard: bool
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.train_csv, self.val_csv = root / "train_log.csv", root / "val_log.csv"
        _truncate(self.train_csv, TRAIN_FIELDS, start_iter)
        _truncate(self.val_csv, VAL_FIELDS, start_iter)
        self.text = (root / "train.log").open("a", encoding="utf-8")
        self.total, self.print_freq, self.start = total_iter, max(1, print_freq), start_iter
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(root / "tb_logger"), purge_step=start_iter + 1)
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_iter, initial=start_iter, unit="it", dynamic_ncols=True)
        self.window_start, self.window_iter, self.began = time.perf_counter(), start_iter, time.perf_counter()
        self.rate = 0.0

    def message(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.text.write(f"{stamp} {text}\n")
        self.text.flush()
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def iteration(
        self, it: int, epoch: int, loss: float, lr: float, terms: dict[str, float] | None = None
    ) -> None:
        """Record one iteration: the total loss (CSV, TensorBoard, progress bar) and, for GAN training, its
        terms and the discriminator's (TensorBoard and the printed lines)."""
        now = time.perf_counter()
        done = it - self.start
        self.rate = done / max(now - self.began, 1e-9)
        with self.train_csv.open("a", newline="") as handle:
            csv.writer(handle).writerow([it, epoch, f"{loss:.6g}", f"{lr:.6g}", f"{self.rate:.4g}"])
        if self.writer is not None:
            self.writer.add_scalar("losses/l_pix", loss, it)
            self.writer.add_scalar("lr", lr, it)
            for name, value in (terms or {}).items():
                self.writer.add_scalar(f"losses/{name}", value, it)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4g}", lr=f"{lr:.2e}")
        if it % self.print_freq == 0:
            rate = (it - self.window_iter) / max(now - self.window_start, 1e-9)
            self.window_start, self.window_iter = now, it
            eta = timedelta(seconds=round((self.total - it) / max(rate, 1e-9)))
            line = f"[iter {it}/{self.total} epoch {epoch}] loss {loss:.4e} lr {lr:.3e} {rate:.2f} it/s"
            line += f" eta {eta}" + "".join(f" {k} {v:.4e}" for k, v in (terms or {}).items())
            self.text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self.text.flush()
            if self.bar is None:
                print(line, flush=True)

    def validation(self, it: int, results: dict[str, dict[str, float]]) -> None:
        with self.val_csv.open("a", newline="") as handle:
            writer = csv.writer(handle)
            for dataset, metrics in results.items():
                for metric, value in metrics.items():
                    writer.writerow([it, dataset, metric, f"{value:.6f}"])
                    if self.writer is not None:
                        self.writer.add_scalar(f"metrics/{dataset}/{metric}", value, it)
        summary = "; ".join(
            f"{d} " + " ".join(f"{m} {v:.4f}" for m, v in metrics.items()) for d, metrics in results.items()
        )
        self.message(f"[iter {it}] validation: {summary}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        self.text.close()
