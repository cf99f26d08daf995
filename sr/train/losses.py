"""Pixel losses named as in BasicSR's `pixel_opt`: L1Loss, MSELoss and CharbonnierLoss, with loss_weight."""

from __future__ import annotations

import torch

from sr.options import LossOptions

REDUCTIONS = ("mean", "sum", "none")


def _charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps)


ELEMENTWISE = {
    "L1Loss": lambda p, t, eps: (p - t).abs(),
    "MSELoss": lambda p, t, eps: (p - t) ** 2,
    "CharbonnierLoss": _charbonnier,
}


class PixelLoss(torch.nn.Module):
    """loss_weight * reduction(elementwise loss); computed in float32 whatever the prediction's dtype."""

    def __init__(self, opt: LossOptions) -> None:
        super().__init__()
        if opt.type not in ELEMENTWISE:
            raise ValueError(f"unknown pixel loss {opt.type!r} (known: {', '.join(ELEMENTWISE)})")
        if opt.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {opt.reduction!r} (known: {', '.join(REDUCTIONS)})")
        self.kind, self.weight, self.reduction, self.eps = opt.type, opt.loss_weight, opt.reduction, opt.eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = ELEMENTWISE[self.kind](pred.float(), target.float(), self.eps)
        if self.reduction == "mean":
            loss = loss.mean()
        elif self.reduction == "sum":
            loss = loss.sum()
        return self.weight * loss
