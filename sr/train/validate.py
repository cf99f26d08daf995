"""Validation during training: the network on paired benchmark sets, scored as BasicSR's `val.metrics`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sr.evaluate import DatasetError, find_pairs, super_resolve_pair
from sr.imageio import read_image
from sr.loading import LoadedModel
from sr.metrics import psnr, ssim
from sr.options import DatasetOptions, MetricOptions

METRICS = {"calculate_psnr": psnr, "calculate_ssim": ssim, "psnr": psnr, "ssim": ssim}

ValSet = tuple[str, list[tuple[str, Path, Path]]]


def check_metrics(metrics: dict[str, MetricOptions], where: str) -> None:
    for name, metric in metrics.items():
        if metric.type not in METRICS:
            raise ValueError(
                f"{where}.{name}.type: unknown metric {metric.type!r} (known: {', '.join(METRICS)})"
            )


def val_sets(datasets: dict[str, DatasetOptions], where: str) -> list[ValSet]:
    """Every `val*` dataset as (name, pairs); missing folders or unpaired images are errors now."""
    sets = []
    for key, opt in datasets.items():
        if not key.startswith("val"):
            continue
        if not isinstance(opt.dataroot_gt, str) or not opt.dataroot_lq:
            raise DatasetError(f"{where}: datasets.{key}: needs dataroot_gt and dataroot_lq")
        gt, lq = Path(opt.dataroot_gt), Path(opt.dataroot_lq)
        for folder in (gt, lq):
            if not folder.is_dir():
                raise DatasetError(f"{where}: datasets.{key}: folder {folder} not found")
        sets.append((opt.name, find_pairs(gt, lq, opt.filename_tmpl)))
    return sets


@torch.no_grad()
def validate(
    net: LoadedModel, sets: list[ValSet], metrics: dict[str, MetricOptions]
) -> dict[str, dict[str, float]]:
    """Mean of each metric per set: uint8 output against the HR cropped to scale x LR."""
    results = {}
    for name, pairs in sets:
        scores: dict[str, list[float]] = {m: [] for m in metrics}
        for _, hr_path, lr_path in pairs:
            sr_u8, hr_u8 = super_resolve_pair(net, read_image(lr_path), read_image(hr_path))
            for key, metric in metrics.items():
                border = net.scale if metric.crop_border is None else metric.crop_border
                fn = METRICS[metric.type]
                scores[key].append(fn(sr_u8, hr_u8, crop_border=border, y_channel=metric.test_y_channel))
        results[name] = {k: float(np.mean(v)) for k, v in scores.items()}
    return results
