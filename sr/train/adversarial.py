"""The adversarial half of GAN training (BasicSR's SRGANModel, Real-ESRGAN's RealESRGANModel, HAT's
RealHATGANModel): the discriminator `network_d`, its optimiser `optim_d`, the GAN and perceptual losses.

The trainer asks it for the generator's extra loss terms (with the discriminator frozen) and then for one
discriminator step on the real target and the detached output, exactly as BasicSR's
`optimize_parameters`. Its weights and optimiser go into the training state for exact resumption.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sr.checkpoint import CheckpointError, read_state_dict
from sr.options import TrainOptions
from sr.train.losses import GANLoss, PerceptualLoss
from sr.train.optimizers import build_optimizer, check_optimizer
from sr.train.schedule import lr_at
from sr.train.vgg_weights import vgg_state_dict


class AdversaryError(ValueError):
    """A problem with the discriminator's or the GAN losses' options or files; one line."""


class Adversary:
    """net_d + optim_d + GAN and perceptual losses, built from a GAN model type's options."""

    def __init__(self, opt: TrainOptions, source: Path, device: torch.device, models_dir: Path) -> None:
        from archs.discriminators import DISCRIMINATORS

        train, where = opt.train, str(source)
        if opt.network_d is None:
            raise AdversaryError(f"{where}: network_d: required for {opt.model_type}")
        if train.gan_opt is None or train.optim_d is None:
            missing = "gan_opt" if train.gan_opt is None else "optim_d"
            raise AdversaryError(f"{where}: train.{missing}: required for {opt.model_type}")
        build = DISCRIMINATORS.get(opt.network_d.type)
        if build is None:
            raise AdversaryError(
                f"{where}: network_d.type: unknown discriminator {opt.network_d.type!r} "
                f"(known: {', '.join(DISCRIMINATORS)})"
            )
        try:
            self.net = build(**opt.network_d.args)
            self.gan = GANLoss(train.gan_opt)
        except (TypeError, ValueError) as error:
            raise AdversaryError(f"{where}: network_d / gan_opt: {error}") from None
        if opt.path.pretrain_network_d:
            self._load(opt.path.pretrain_network_d, opt.path.param_key_d, opt.path.strict_load_d)
        self.perceptual = None
        if train.perceptual_opt is not None:
            p = train.perceptual_opt
            try:
                weights = vgg_state_dict(p.vgg_type, p.vgg_weights, models_dir=models_dir)
                self.perceptual = PerceptualLoss(p, weights).to(device)
            except ValueError as error:
                raise AdversaryError(f"{where}: train.perceptual_opt: {error}") from None
        try:
            check_optimizer(train.optim_d)
        except ValueError as error:
            raise AdversaryError(f"{where}: train.optim_d.type: {error}") from None
        self.net.to(device).train()
        self.optimizer = build_optimizer(train.optim_d, self.net.parameters())
        self.opt = opt

    def _load(self, path: str, key: str | None, strict: bool) -> None:
        try:
            self.net.load_state_dict(read_state_dict(path, key), strict=strict)
        except (CheckpointError, RuntimeError) as error:
            text = " ".join(str(error).split())[:300]
            raise AdversaryError(f"{path}: path.pretrain_network_d: {text}") from None

    def generator_steps(self, iteration: int) -> bool:
        """Whether the generator steps at this iteration (net_d_iters, net_d_init_iters)."""
        train = self.opt.train
        return iteration % train.net_d_iters == 0 and iteration > train.net_d_init_iters

    def generator_losses(self, out: torch.Tensor, percep_gt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Perceptual, style and adversarial terms for the generator; the discriminator takes no gradient."""
        self.net.requires_grad_(False)
        losses = {}
        if self.perceptual is not None:
            percep, style = self.perceptual(out, percep_gt)
            losses |= {k: v for k, v in (("l_g_percep", percep), ("l_g_style", style)) if v is not None}
        losses["l_g_gan"] = self.gan(self.net(out), True, discriminator=False)
        return losses

    def discriminator_step(self, iteration: int, out: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        """One optimiser step of the discriminator on the real target and the generator's detached output."""
        self.net.requires_grad_(True)
        lr = lr_at(iteration, self.opt.train.optim_d.lr, self.opt.train.scheduler, self.opt.train.warmup_iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        real_pred = self.net(real)
        l_real = self.gan(real_pred, True, discriminator=True)
        l_real.backward()
        fake_pred = self.net(out.detach().clone())
        l_fake = self.gan(fake_pred, False, discriminator=True)
        l_fake.backward()
        self.optimizer.step()
        return {
            "l_d_real": l_real.item(),
            "l_d_fake": l_fake.item(),
            "out_d_real": real_pred.detach().mean().item(),
            "out_d_fake": fake_pred.detach().mean().item(),
        }

    def state_dict(self) -> dict:
        return {"net_d": self.net.state_dict(), "optimizer_d": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net_d"])
        self.optimizer.load_state_dict(state["optimizer_d"])
