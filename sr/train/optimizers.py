"""Optimisers named as in BasicSR's `optim_g` / `optim_d` (Adam, AdamW), built from their options."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from sr.options import OptimizerOptions

OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


def check_optimizer(o: OptimizerOptions) -> None:
    """A ValueError naming the type unless it is one of OPTIMIZERS."""
    if o.type not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {o.type!r} (known: {', '.join(OPTIMIZERS)})")


def build_optimizer(o: OptimizerOptions, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser `o` describes over the trainable ones of `params`."""
    check_optimizer(o)
    trainable = [p for p in params if p.requires_grad]
    return OPTIMIZERS[o.type](
        trainable, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas), eps=o.eps, amsgrad=o.amsgrad
    )
