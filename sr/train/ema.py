"""Exponential moving average of a network's parameters, as BasicSR's `model_ema` (buffers are copied)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """ema = decay * ema + (1 - decay) * param after each optimiser step; starts as a copy of the network."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must be between 0 and 1, not {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for name, value in self.model.named_parameters():
            value.mul_(self.decay).add_(params[name].detach(), alpha=1 - self.decay)
        buffers = dict(model.named_buffers())
        for name, value in self.model.named_buffers():
            value.copy_(buffers[name])
