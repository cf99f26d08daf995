"""The training loop: builds everything an options file describes, checks it all before the first
iteration, then trains with periodic logging, validation and atomic checkpoints, resuming exactly.

Exact resumption: the learning rate is a function of the iteration, batches and their augmentations are
functions of (seed, epoch, position), and the checkpoint holds weights, EMA, optimiser and RNG states, so a
run resumed from iteration k repeats the uninterrupted run's iterations k+1.. bit for bit (CPU, fixed seed).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from sr.checkpoint import CheckpointError, read_state_dict
from sr.data.datasets import build_dataset
from sr.data.sampler import TrainBatchSampler
from sr.loading import LoadedModel, ModelLoadError, input_channels, load_weights, network_params, resolve
from sr.options import SecondOrderOptions, TrainOptions
from sr.train import distributed, state
from sr.train.ema import EMA
from sr.train.logs import TrainLog
from sr.train.losses import PixelLoss
from sr.train.optimizers import build_optimizer, check_optimizer
from sr.train.pool import PairPool
from sr.train.schedule import check_scheduler, lr_at
from sr.train.validate import check_metrics, val_sets, validate

# BasicSR model types that train a network with a pixel loss; ours handles them all (networks pad themselves).
MODEL_TYPES = (
    "SRModel",
    "SwinIRModel",
    "HATModel",
    "DATModel",
    "DATModle",
    "SRFormerModel",
    "CAMixerSRModel",
)
# Real-world model types (Real-ESRGAN's, HAT's): HR images degraded on the fly by the second-order pipeline;
# value: whether the type trains adversarially. SRGANModel is BasicSR's GAN on ordinary pairs.
REAL_WORLD_TYPES = {
    "RealESRNetModel": False,
    "RealHATMSEModel": False,
    "RealESRGANModel": True,
    "RealHATGANModel": True,
}
GAN_TYPES = ("SRGANModel", "RealESRGANModel", "RealHATGANModel")


class TrainError(ValueError):
    """A problem with the options, data or checkpoints found before (or while) training; one line."""


@dataclass
class TrainResult:
    root: Path
    iteration: int
    weights: Path | None
    model: nn.Module
    ema: nn.Module | None


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Trainer:
    def __init__(self, opt: TrainOptions, source: Path, *, auto_resume: bool = False) -> None:
        self.opt, self.source = opt, source
        self.dist = distributed.setup(opt.num_gpu)
        self.root = Path(opt.path.experiments_root or Path("experiments") / opt.name)
        where = str(source)
        known = (*MODEL_TYPES, *REAL_WORLD_TYPES, "SRGANModel")
        if opt.model_type not in known:
            raise TrainError(f"{where}: model_type: unknown {opt.model_type!r} (known: {', '.join(known)})")
        train = opt.train
        self.real_world = opt.model_type in REAL_WORLD_TYPES
        self.gan = opt.model_type in GAN_TYPES
        if train.pixel_opt is None and not self.gan:
            raise TrainError(f"{where}: train.pixel_opt: required (the pixel loss)")
        if opt.degradation is not None and not self.real_world:
            raise TrainError(
                f"{where}: the top-level degradation keys (resize_prob, noise_range, ...) are read by the "
                f"real-world model types only ({', '.join(REAL_WORLD_TYPES)}), not {opt.model_type}"
            )
        try:
            check_optimizer(train.optim_g)
        except ValueError as error:
            raise TrainError(f"{where}: train.optim_g.type: {error}") from None
        if train.amp not in (None, "bf16"):
            raise TrainError(
                f"{where}: train.amp: {train.amp!r} is not supported (use bf16, or leave it out)"
            )
        if "train" not in opt.datasets:
            raise TrainError(f"{where}: datasets.train: required")
        try:
            check_scheduler(train.scheduler)
            self.loss = PixelLoss(train.pixel_opt) if train.pixel_opt else None
            check_metrics(opt.val.metrics if opt.val else {}, f"{where}: val.metrics")
        except ValueError as error:
            raise TrainError(f"{where}: train: {error}") from None

        self.seed = opt.manual_seed if opt.manual_seed is not None else random.randint(1, 10000)
        torch.manual_seed(self.seed)
        try:
            self.family, self.params = network_params(opt.network_g.type, opt.network_g.args)
        except ModelLoadError as error:
            raise TrainError(f"{where}: {error}") from None
        if self.params.setdefault("scale", opt.scale) != opt.scale:
            raise TrainError(
                f"{where}: network_g scale {self.params['scale']} differs from scale {opt.scale}"
            )
        try:
            self.net = self.family.build(**self.params)
        except (TypeError, ValueError) as error:
            raise TrainError(f"{where}: network_g: cannot build {self.family.name}: {error}") from None
        if opt.path.pretrain_network_g:
            self._load_pretrained(opt.path.pretrain_network_g)

        # Data is checked now, so a missing folder or a bad image stops the run before it starts.
        train_opt = opt.datasets["train"]
        self.degradation = opt.degradation or SecondOrderOptions() if self.real_world else None
        self.dataset = build_dataset(
            train_opt, opt.scale, f"{where}: datasets.train", **self._real_world_data(train_opt.type)
        )
        self.pool = None
        if self.degradation is not None and self.degradation.queue_size:
            try:
                self.pool = PairPool(self.degradation.queue_size, train_opt.batch_size_per_gpu, self.seed)
            except ValueError as error:
                raise TrainError(f"{where}: {error}") from None
        self.val_sets = val_sets(opt.datasets, where) if opt.val and opt.val.val_freq else []
        try:
            self.sampler = TrainBatchSampler(
                len(self.dataset),
                train_opt.batch_size_per_gpu,
                seed=self.seed,
                shuffle=train_opt.use_shuffle,
                enlarge_ratio=train_opt.dataset_enlarge_ratio,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
            )
        except ValueError as error:
            raise TrainError(f"{where}: datasets.train: {error}") from None

        device = self.dist.device
        self.amp = train.amp == "bf16" and _bf16_ok(device)
        self.memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
        self.net.to(device, memory_format=self.memory_format).train()
        self.ema = EMA(self.net, train.ema_decay) if train.ema_decay > 0 else None
        self.optimizer = build_optimizer(train.optim_g, self.net.parameters())
        self.adversary = None
        if self.gan:
            from sr.train.adversarial import Adversary
            from sr.zoo import models_dir

            try:
                self.adversary = Adversary(opt, source, device, models_dir())
            except ValueError as error:
                raise TrainError(str(error)) from None
        self.start_iter = 0
        resume_from = self._resume_point(auto_resume)
        if resume_from is not None:
            self._resume(resume_from)
        elif self.dist.main and self.root.exists() and any(self.root.iterdir()):
            archived = self.root.with_name(f"{self.root.name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
            shutil.move(str(self.root), archived)
        distributed.barrier(self.dist)
        self.model = self.net
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.net,
                device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=opt.find_unused_parameters,
            )
        workers = train_opt.num_worker_per_gpu
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            prefetch_factor=train_opt.prefetch_factor if workers else None,
            persistent_workers=workers > 0,
            pin_memory=train_opt.pin_memory and device.type == "cuda",
        )

    def _real_world_data(self, dataset_type: str) -> dict:
        """What RealESRGANDataset needs from a real-world model's options: the degradation settings,
        whether the LR is made from the unsharp-masked HR, whether a sharpened target is needed."""
        d = self.degradation
        if d is None or dataset_type != "RealESRGANDataset":
            return {}
        # RealESRNetModel sharpens the HR (input and target) when gt_usm; RealESRGANModel always degrades
        # the sharpened HR and picks the target of each loss with l1/percep/gan_gt_usm.
        if self.gan:
            return dict(
                degradation=d, usm_input=True, usm_target=d.l1_gt_usm or d.percep_gt_usm or d.gan_gt_usm
            )
        return dict(degradation=d, usm_input=d.gt_usm, usm_target=d.gt_usm)

    def _target(self, batch: dict, flag: str) -> torch.Tensor:
        """The ground truth a loss compares with: the sharpened one where the options say so."""
        d = self.degradation
        sharpened = d is not None and "gt_usm" in batch and getattr(d, flag if self.gan else "gt_usm")
        return batch["gt_usm" if sharpened else "gt"]

    def _load_pretrained(self, path: str) -> None:
        p = self.opt.path
        try:
            weights = resolve(path)
            state_dict = self.family.remap_keys(read_state_dict(weights, p.param_key_g))
            load_weights(self.net, self.family, state_dict, weights, strict=p.strict_load_g)
        except (CheckpointError, ModelLoadError) as error:
            raise TrainError(f"{self.source}: path.pretrain_network_g: {error}") from None

    def _resume_point(self, auto_resume: bool) -> int | None:
        if self.opt.path.resume_state:
            path = Path(self.opt.path.resume_state)
            if not path.is_file() or not path.stem.isdigit():
                raise TrainError(f"{self.source}: path.resume_state: {path} is not a <iter>.state file")
            self.root = path.parent.parent
            return int(path.stem)
        return state.latest(self.root) if auto_resume else None

    def _resume(self, iteration: int) -> None:
        params, ema, saved = state.load(self.root, iteration)
        self.net.load_state_dict(params)
        if self.ema is not None:
            if ema is None:
                raise TrainError(
                    f"{state.weights_path(self.root, iteration)}: no params_ema to resume EMA from"
                )
            self.ema.model.load_state_dict(ema)
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.pool is not None:
            self.pool.load_state_dict(saved["pool"])
        if self.adversary is not None:
            self.adversary.load_state_dict(saved["adversary"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("seed") != self.seed:
            raise TrainError(
                f"{self.root}: the checkpoint was trained with seed {saved.get('seed')}, "
                f"the options now give {self.seed}"
            )
        self.start_iter = iteration

    def _state(self, iteration: int) -> dict:
        saved = {
            "iter": iteration,
            "seed": self.seed,
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.pool is not None:
            saved["pool"] = self.pool.state_dict()
        if self.adversary is not None:
            saved["adversary"] = self.adversary.state_dict()
        return saved

    def _settings(self) -> dict:
        """What the weights cannot tell, recorded in them so `sr.load_model` rebuilds this network exactly."""
        unstored = {k: self.params[k] for k in self.family.unstored if k in self.params}
        return {"scale": self.opt.scale, **unstored}

    def _autocast(self):
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)

    def _step(self, batch: dict, iteration: int) -> tuple[float, float, dict[str, float]]:
        device = self.dist.device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        if self.pool is not None:
            batch = self.pool.exchange(batch)
        lq = batch["lq"].contiguous(memory_format=self.memory_format)
        lr = lr_at(iteration, self.opt.train.optim_g.lr, self.opt.train.scheduler, self.opt.train.warmup_iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.model(lq)
        terms: dict[str, torch.Tensor] = {}
        if self.adversary is None or self.adversary.generator_steps(iteration):
            if self.loss is not None:
                terms["l_g_pix"] = self.loss(out, self._target(batch, "l1_gt_usm"))
            if self.adversary is not None:
                terms |= self.adversary.generator_losses(out, self._target(batch, "percep_gt_usm"))
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                raise TrainError(
                    f"iteration {iteration}: the loss is {loss.item()} (diverged; lower the lr?)"
                )
            loss.backward()
            if self.opt.train.grad_clip:
                nn.utils.clip_grad_norm_(self.net.parameters(), self.opt.train.grad_clip)
            self.optimizer.step()
        logged = {k: v.item() for k, v in terms.items()}
        if self.adversary is not None:
            logged |= self.adversary.discriminator_step(iteration, out, self._target(batch, "gan_gt_usm"))
        if self.ema is not None:
            self.ema.update(self.net)
        return sum(v for k, v in logged.items() if k.startswith("l_g")), lr, logged

    def _validate(self, log: TrainLog, iteration: int) -> None:
        net = self.ema.model if self.ema is not None else self.net
        was_training = net.training
        net.eval()
        loaded = LoadedModel(
            model=net,
            family=self.family.name,
            scale=self.opt.scale,
            params=self.params,
            multiple_of=self.family.multiple_of,
            supports_fp16=self.family.supports_fp16,
            supports_bf16=self.family.supports_bf16,
            source=str(self.source),
            in_channels=input_channels(net),
        )
        log.validation(iteration, validate(loaded, self.val_sets, self.opt.val.metrics))
        net.train(was_training)

    def run(self) -> TrainResult:
        opt, total = self.opt, self.opt.train.total_iter
        log = None
        if self.dist.main:
            log = TrainLog(
                self.root,
                start_iter=self.start_iter,
                total_iter=total,
                print_freq=opt.logger.print_freq,
                tensorboard=opt.logger.use_tb_logger,
            )
            what = f"resuming at iteration {self.start_iter}" if self.start_iter else "starting"
            log.message(
                f"{opt.name}: {what}; {self.family.name} {self.params}, seed {self.seed}, "
                f"{len(self.dataset)} training images, {len(self.sampler)} batches/epoch, "
                f"{self.dist.world_size} process(es) on {self.dist.device}, "
                f"{'bf16 autocast' if self.amp else 'fp32'}"
            )
            if self.dataset.skipped:
                names = ", ".join(p.name for p in self.dataset.skipped[:5])
                more = ", ..." if len(self.dataset.skipped) > 5 else ""
                log.message(
                    f"left out {len(self.dataset.skipped)} training images smaller than the "
                    f"{self.dataset.gt_size}px patch ({names}{more})"
                )
            if opt.train.amp and not self.amp:
                log.message(f"bf16 is not supported on {self.dist.device}; training in fp32")
        iteration, weights = self.start_iter, None
        save_freq = opt.logger.save_checkpoint_freq
        val_freq = opt.val.val_freq if opt.val and self.val_sets else None
        try:
            while iteration < total:
                epoch, skip = divmod(iteration, len(self.sampler))
                self.sampler.start(epoch, skip)
                for batch in self.loader:
                    iteration += 1
                    loss, lr, terms = self._step(batch, iteration)
                    if log:
                        log.iteration(iteration, epoch, loss, lr, terms if self.adversary else None)
                    if iteration % save_freq == 0 or iteration == total:
                        if self.dist.main:
                            if self.adversary is not None:
                                state.save_discriminator(self.root, iteration, self.adversary.net)
                            weights = state.save(
                                self.root,
                                iteration,
                                self.net,
                                self.ema.model if self.ema else None,
                                self._state(iteration),
                                self._settings(),
                            )
                        distributed.barrier(self.dist)
                    if val_freq and (iteration % val_freq == 0 or iteration == total):
                        if self.dist.main:
                            self._validate(log, iteration)
                        distributed.barrier(self.dist)
                    if iteration >= total:
                        break
            if log:
                log.message(f"{opt.name}: finished {total} iterations; weights in {weights}")
        finally:
            if log:
                log.close()
        return TrainResult(self.root, iteration, weights, self.net, self.ema.model if self.ema else None)
