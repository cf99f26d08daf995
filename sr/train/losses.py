"""Training losses named as in BasicSR: pixel losses (`pixel_opt`: L1Loss, MSELoss, CharbonnierLoss), the
adversarial loss (`gan_opt`: GANLoss) and the VGG perceptual and style loss (`perceptual_opt`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from sr.options import GANLossOptions, LossOptions, PerceptualLossOptions

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


GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")


class GANLoss(torch.nn.Module):
    """BasicSR's GANLoss: the loss of discriminator outputs `pred` against "real" or "fake".

    vanilla: BCE on logits against real_label_val / fake_label_val; lsgan: squared error against them;
    wgan: -mean (real) or mean (fake); wgan_softplus: mean softplus(-x) or softplus(x); hinge: for the
    discriminator mean relu(1 - x) (real) or relu(1 + x) (fake), for the generator -mean. The generator's
    term is multiplied by loss_weight, the discriminator's is not.
    """

    def __init__(self, opt: GANLossOptions) -> None:
        super().__init__()
        if opt.type != "GANLoss":
            raise ValueError(f"gan_opt.type: unknown GAN loss {opt.type!r} (known: GANLoss)")
        if opt.gan_type not in GAN_TYPES:
            raise ValueError(f"gan_opt.gan_type: unknown {opt.gan_type!r} (known: {', '.join(GAN_TYPES)})")
        self.opt = opt

    def forward(self, pred: torch.Tensor, real: bool, *, discriminator: bool) -> torch.Tensor:
        kind, pred = self.opt.gan_type, pred.float()
        if kind == "hinge":
            loss = F.relu(1 - pred if real else 1 + pred).mean() if discriminator else -pred.mean()
        elif kind == "wgan":
            loss = -pred.mean() if real else pred.mean()
        elif kind == "wgan_softplus":
            loss = F.softplus(-pred if real else pred).mean()
        else:
            label = torch.full_like(pred, self.opt.real_label_val if real else self.opt.fake_label_val)
            loss = (
                F.binary_cross_entropy_with_logits(pred, label)
                if kind == "vanilla"
                else F.mse_loss(pred, label)
            )
        return loss if discriminator else self.opt.loss_weight * loss


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """N x C x C Gram matrices of N x C x H x W features, divided by C·H·W (BasicSR's `_gram_mat`)."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


CRITERIA = ("l1", "l2", "fro")


class PerceptualLoss(torch.nn.Module):
    """BasicSR's PerceptualLoss: Σ layer_weight · d(VGG(x), VGG(gt)) times perceptual_weight, and the same
    over Gram matrices times style_weight; d is the mean absolute (l1) or squared (l2) difference or the
    Frobenius norm (fro). Returns (perceptual, style), None for a term whose weight is 0."""

    def __init__(self, opt: PerceptualLossOptions, vgg_state_dict: Mapping[str, torch.Tensor]) -> None:
        from archs.vgg import vgg_features

        super().__init__()
        if opt.type != "PerceptualLoss":
            raise ValueError(f"perceptual_opt.type: unknown loss {opt.type!r} (known: PerceptualLoss)")
        if opt.criterion not in CRITERIA:
            raise ValueError(f"perceptual_opt.criterion: {opt.criterion!r} (known: {', '.join(CRITERIA)})")
        self.opt = opt
        self.vgg = vgg_features(
            vgg_state_dict,
            list(opt.layer_weights),
            vgg_type=opt.vgg_type,
            use_input_norm=opt.use_input_norm,
            range_norm=opt.range_norm,
        )

    def _distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.opt.criterion == "fro":
            return torch.linalg.vector_norm(a - b)
        return F.l1_loss(a, b) if self.opt.criterion == "l1" else F.mse_loss(a, b)

    def forward(self, x: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        ours, theirs = self.vgg(x.float()), self.vgg(gt.detach().float())
        weights = self.opt.layer_weights
        percep = style = None
        if self.opt.perceptual_weight > 0:
            percep = sum(self._distance(ours[k], theirs[k]) * weights[k] for k in ours)
            percep = percep * self.opt.perceptual_weight
        if self.opt.style_weight > 0:
            style = sum(
                self._distance(gram_matrix(ours[k]), gram_matrix(theirs[k])) * weights[k] for k in ours
            )
            style = style * self.opt.style_weight
        return percep, style
