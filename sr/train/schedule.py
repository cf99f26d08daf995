"""Learning rate as a pure function of the iteration, reproducing BasicSR's schedulers and linear warm-up.

BasicSR steps its scheduler once per iteration from the second on, so iteration k (1-based) trains at the
scheduler's value for step k-1; during warm-up (k < warmup_iter) the rate is base * k / warmup_iter.
Being a function of k, the rate needs no saved state to resume exactly.
"""

from __future__ import annotations

import bisect
import math

from sr.options import SchedulerOptions

SCHEDULERS = ("MultiStepLR", "MultiStepRestartLR", "CosineAnnealingRestartLR")


def check_scheduler(opt: SchedulerOptions | None) -> None:
    if opt is None:
        return
    if opt.type not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {opt.type!r} (known: {', '.join(SCHEDULERS)})")
    if opt.type == "CosineAnnealingRestartLR":
        if not opt.periods:
            raise ValueError("CosineAnnealingRestartLR needs periods")
        if len(opt.periods) != len(opt.restart_weights):
            raise ValueError("CosineAnnealingRestartLR: periods and restart_weights differ in length")
    elif len(opt.restarts) != len(opt.restart_weights):
        raise ValueError(f"{opt.type}: restarts and restart_weights differ in length")


def _multistep(opt: SchedulerOptions, step: int) -> float:
    """BasicSR's MultiStepRestartLR: gamma per milestone passed, reset to the weight at each restart."""
    factor, last_restart = 1.0, 0
    for restart, weight in zip(opt.restarts, opt.restart_weights, strict=True):
        if 0 < restart <= step:
            factor, last_restart = weight, restart
    passed = bisect.bisect_right(opt.milestones, step) - bisect.bisect_right(opt.milestones, last_restart)
    return factor * opt.gamma**passed


def _cosine_restart(opt: SchedulerOptions, step: int, base_lr: float) -> float:
    ends = [sum(opt.periods[: i + 1]) for i in range(len(opt.periods))]
    index = min(bisect.bisect_left(ends, step), len(ends) - 1)
    start = 0 if index == 0 else ends[index - 1]
    weight, period = opt.restart_weights[index], opt.periods[index]
    lr = opt.eta_min + weight * 0.5 * (base_lr - opt.eta_min) * (
        1 + math.cos(math.pi * (step - start) / period)
    )
    return lr / base_lr


def lr_at(iteration: int, base_lr: float, opt: SchedulerOptions | None, warmup_iter: int = -1) -> float:
    """Learning rate for 1-based training iteration `iteration`."""
    if warmup_iter > 0 and iteration < warmup_iter:
        return base_lr * iteration / warmup_iter
    step = iteration - 1
    if opt is None or step <= 0:
        return base_lr
    if opt.type == "CosineAnnealingRestartLR":
        return base_lr * _cosine_restart(opt, step, base_lr)
    return base_lr * _multistep(opt, step)
