"""Validation during training, scored as BasicSR's `val.metrics`: super-resolution on paired LR/HR sets, and
restoration (DegradedHRDataset entries with one fixed noise level or JPEG quality) on clean images degraded
as `sr test --task` degrades them (the official protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sr.evaluate import DatasetError, find_pairs, super_resolve_pair
from sr.imageio import read_image, to_uint8
from sr.loading import LoadedModel
from sr.metrics import psnr, psnrb, ssim
from sr.options import DatasetOptions, MetricOptions
from sr.tasks import Task, clean_image, options_set

METRICS = {
    "calculate_psnr": psnr,
    "calculate_ssim": ssim,
    "calculate_psnrb": psnrb,
    "psnr": psnr,
    "ssim": ssim,
    "psnrb": psnrb,
}

# (name, HR/LR pairs) for super-resolution; (name, clean files, task) for restoration.
ValSet = tuple[str, list[tuple[str, Path, Path]]] | tuple[str, list[Path], Task]


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
        if opt.type == "DegradedHRDataset":
            test_set, task = options_set(opt, f"{where}: datasets.{key}")
            sets.append((test_set.name, test_set.files, task))
            continue
        if not isinstance(opt.dataroot_gt, str) or not opt.dataroot_lq:
            raise DatasetError(f"{where}: datasets.{key}: needs dataroot_gt and dataroot_lq")
        gt, lq = Path(opt.dataroot_gt), Path(opt.dataroot_lq)
        for folder in (gt, lq):
            if not folder.is_dir():
                raise DatasetError(f"{where}: datasets.{key}: folder {folder} not found")
        sets.append((opt.name, find_pairs(gt, lq, opt.filename_tmpl)))
    return sets


def _score(fn, restored, clean, metric: MetricOptions, border: int) -> float:
    return fn(restored, clean, crop_border=border, y_channel=metric.test_y_channel)


@torch.no_grad()
def validate(
    net: LoadedModel, sets: list[ValSet], metrics: dict[str, MetricOptions]
) -> dict[str, dict[str, float]]:
    """Mean of each metric per set: uint8 output against the HR cropped to scale x LR."""
    from sr.upscale import run_pixels

    results = {}
    for name, items, *task in sets:
        scores: dict[str, list[float]] = {m: [] for m in metrics}
        for item in items:
            if task:  # restoration: degrade the clean image, restore it
                clean = clean_image(item, task[0], net.in_channels)
                out, ref = to_uint8(run_pixels(net, task[0].degrade(clean))), clean
            else:
                _, hr_path, lr_path = item
                out, ref = super_resolve_pair(net, read_image(lr_path), read_image(hr_path))
            for key, metric in metrics.items():
                default = 0 if task else net.scale  # restoration scores whole images, as its protocol
                border = default if metric.crop_border is None else metric.crop_border
                scores[key].append(_score(METRICS[metric.type], out, ref, metric, border))
        results[name] = {k: float(np.mean(v)) for k, v in scores.items()}
    return results
