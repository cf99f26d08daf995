"""The PNG of a run's curves: training loss (raw and smoothed) and validation metrics against iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sr.train.logs import read_csv


def plot_run(root: Path, out: Path | None = None) -> Path:
    """Draw `<root>/curves.png` (or `out`) from the run's train_log.csv and val_log.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train_csv, val_csv = root / "train_log.csv", root / "val_log.csv"
    if not train_csv.is_file():
        raise FileNotFoundError(f"{root}: no train_log.csv (not a training run folder?)")
    rows = read_csv(train_csv)
    iters = np.array([int(r["iter"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    val = read_csv(val_csv) if val_csv.is_file() else []
    curves: dict[str, list[tuple[int, float]]] = {}
    for r in val:
        curves.setdefault(f"{r['dataset']} {r['metric']}", []).append((int(r["iter"]), float(r["value"])))
    psnr = {k: v for k, v in curves.items() if "psnr" in k.lower()} or curves

    fig, axes = plt.subplots(1, 2 if psnr else 1, figsize=(11 if psnr else 6, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(iters, loss, color="0.8", linewidth=0.5, label="loss")
    if len(loss) >= 20:
        k = max(1, len(loss) // 50)
        smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(iters[k - 1 :], smooth, color="C0", label=f"mean of {k}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    if psnr:
        ax = axes[0][1]
        for name, points in psnr.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        ax.set_xlabel("iteration")
        ax.set_ylabel("validation")
        ax.legend()
    fig.suptitle(root.name)
    fig.tight_layout()
    out = out or root / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
