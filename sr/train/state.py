"""Training checkpoints: weights as safetensors (`params` and `params_ema`) plus a training-state file.

Layout under the experiment folder, BasicSR-like: `models/net_g_<iter>.safetensors` (and a GAN run's
`models/net_d_<iter>.safetensors`) and `training_states/<iter>.state`. All are written atomically
(temporary file, then rename), weights first, so a state file always has its weights; `latest()` finds the
newest complete pair for --auto-resume.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from sr.atomic import write_atomically
from sr.checkpoint import SETTINGS_KEY, read_state_dict


def _tensors(model: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _inference_form(model: nn.Module) -> nn.Module:
    """The network as its weights file holds it: re-parameterisable networks trained with their branches
    (`merged` False, e.g. CFSR) as a merged copy (their `merge()`), any other network as it is."""
    return copy.deepcopy(model).merge() if getattr(model, "merged", True) is False else model


def weights_path(root: Path, iteration: int) -> Path:
    return root / "models" / f"net_g_{iteration}.safetensors"


def state_path(root: Path, iteration: int) -> Path:
    return root / "training_states" / f"{iteration}.state"


def save(
    root: Path,
    iteration: int,
    model: nn.Module,
    ema: nn.Module | None,
    state: dict,
    settings: dict | None = None,
) -> Path:
    """Write the weights (params, and params_ema when training with EMA) then the training state.

    `settings` (what the weights cannot tell: scale, img_range, ...) goes into the weights' metadata, read
    back by `sr.checkpoint.read_settings`.
    """
    deployed = _inference_form(model)
    tensors = _tensors(deployed, "params")
    if ema is not None:
        tensors |= _tensors(_inference_form(ema), "params_ema")
    if deployed is not model:  # the state keeps the training form too, for exact resumption
        state = {**state, "params": model.state_dict(), "params_ema": ema.state_dict() if ema else None}
    weights = weights_path(root, iteration)
    metadata = {"iteration": str(iteration)}
    if settings:
        metadata[SETTINGS_KEY] = json.dumps(settings, sort_keys=True)
    write_atomically(weights, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    write_atomically(state_path(root, iteration), lambda tmp: torch.save(state, tmp))
    return weights


def save_discriminator(root: Path, iteration: int, net_d: nn.Module) -> Path:
    """A GAN run's discriminator as `models/net_d_<iter>.safetensors` (BasicSR saves net_d_<iter>.pth), for
    `path.pretrain_network_d` of a later run; written before the state file that names the iteration."""
    path = root / "models" / f"net_d_{iteration}.safetensors"
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net_d.state_dict().items()}
    write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata={"iteration": str(iteration)}))
    return path


def latest(root: Path) -> int | None:
    """The highest iteration with both a state file and its weights, or None."""
    found = []
    for path in (root / "training_states").glob("*.state"):
        if re.fullmatch(r"\d+", path.stem) and weights_path(root, int(path.stem)).is_file():
            found.append(int(path.stem))
    return max(found, default=None)


def load(root: Path, iteration: int) -> tuple[dict, dict | None, dict]:
    """(params, params_ema or None, training state) saved at `iteration`."""
    state = torch.load(state_path(root, iteration), map_location="cpu", weights_only=True)
    if "params" in state:  # a re-parameterisable network's training form (see `save`)
        return state.pop("params"), state.pop("params_ema"), state
    weights = weights_path(root, iteration)
    params = read_state_dict(weights, "params")
    try:
        ema = read_state_dict(weights, "params_ema")
    except ValueError:
        ema = None
    return params, ema, state
