"""From a weight file or a zoo name to a ready network: detection, hyper-parameters, strict loading.

The scale comes from the weights where they hold it; otherwise from the caller, then from the file name
(`PANx3_DF2K.pth`, `4x-HAT-S.pth`); a still-missing setting is a clear error, never a guess.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import archs
from archs import Family, MissingHyperParameter, UnknownArchitecture
from sr import zoo
from sr.checkpoint import CheckpointError, read_state_dict


class ModelLoadError(ValueError):
    """A model that cannot be loaded; the message is one line naming the file and the problem."""


@dataclass
class LoadedModel:
    """A network in eval mode with what the inference engine needs to know about it."""

    model: nn.Module
    family: str
    scale: int
    params: dict
    multiple_of: int
    supports_fp16: bool
    supports_bf16: bool
    source: str


_SCALE_IN_NAME = re.compile(r"(?i)(?:x(\d+)(?![0-9])|(?<![a-z0-9])(\d+)x(?![a-z]))")


def scale_from_filename(name: str) -> int | None:
    """The scale written in a file name (`PANx2_DF2K.pth` → 2), if exactly one is written there."""
    found = {int(a or b) for a, b in _SCALE_IN_NAME.findall(Path(name).stem)}
    found &= {2, 3, 4, 8}
    return found.pop() if len(found) == 1 else None


# The bundled default model: PAN x4 trained by this project (options/train/PAN/train_PAN_x4_default.yml).
DEFAULT_MODEL = Path(__file__).resolve().parent / "weights" / "PANx4_default.safetensors"
DEFAULT_NAME = "default"


def resolve(path_or_name: str | os.PathLike | None) -> Path:
    """A weight file for a path or a zoo name; None or 'default' is the bundled default model."""
    if path_or_name is None or str(path_or_name) == DEFAULT_NAME:
        if not DEFAULT_MODEL.is_file():
            raise ModelLoadError(f"{DEFAULT_MODEL}: the bundled default model is missing (reinstall sr)")
        return DEFAULT_MODEL
    path = Path(path_or_name)
    if path.exists():
        return path
    entry = zoo.lookup(str(path_or_name)) or zoo.by_filename(path.name)
    if entry is not None:
        try:
            return zoo.fetch(entry)
        except zoo.ZooError as error:
            raise ModelLoadError(str(error)) from None
    raise ModelLoadError(f"{path_or_name}: no such file, and not a model name (see `sr models`)")


def load_model(
    path_or_name: str | os.PathLike | None = None,
    scale: int | None = None,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load weights, detect the network, infer its settings and build it in eval mode."""
    path = resolve(path_or_name)
    state_dict = _read(path)
    try:
        family = archs.detect_family(state_dict)
    except UnknownArchitecture as error:
        raise ModelLoadError(f"{path}: {error}") from None
    state_dict = family.remap_keys(state_dict)
    entry = zoo.lookup(str(path_or_name))
    hint = scale or (entry.scale if entry else None) or scale_from_filename(path.name)
    params = _params(family, state_dict, scale, hint, path)
    return _build(family, params, state_dict, path, strict=True, device=device)


def load_configured_model(
    family_name: str,
    params: dict,
    weights: str | os.PathLike,
    param_key: str | None = None,
    strict: bool = True,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Build the network an options file describes (`network_g`) and load its weights, BasicSR-style."""
    family, params = network_params(family_name, params)
    path = resolve(weights)
    state_dict = family.remap_keys(_read(path, param_key))
    return _build(family, params, state_dict, path, strict=strict, device=device)


# Official constructor arguments that name our arguments differently, and ones that do not change the network.
RENAMED_ARGS = {"upscale": "scale"}
SIZE_ONLY_ARGS = ("img_size",)


def network_params(family_name: str, args: dict) -> tuple[Family, dict]:
    """The family and constructor arguments for an options file's `network_g` (official names accepted).

    `upscale` becomes `scale`; `img_size` (which official code uses only to pre-build masks for one size) is
    dropped where our constructor does not take it. Any other unknown argument is an error naming it.
    """
    try:
        family = archs.get_family(family_name)
    except KeyError as error:
        raise ModelLoadError(str(error.args[0])) from None
    accepted = inspect.signature(family.build).parameters
    params = {}
    for key, value in args.items():
        key = RENAMED_ARGS.get(key, key)
        if key in accepted:
            params[key] = value
        elif key not in SIZE_ONLY_ARGS:
            known = ", ".join(accepted)
            raise ModelLoadError(f"network_g.{key}: {family.name} has no such argument (it takes {known})")
    return family, params


def _read(path: Path, key: str | None = None) -> dict:
    try:
        return read_state_dict(path, key)
    except CheckpointError as error:
        raise ModelLoadError(str(error)) from None


def _build(
    family: Family, params: dict, state_dict: dict, path: Path, *, strict: bool, device: str | torch.device
) -> LoadedModel:
    try:
        model = family.build(**params)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(f"{path}: cannot build {family.name} with {params}: {error}") from None
    load_weights(model, family, state_dict, path, strict=strict)
    model.eval().requires_grad_(False).to(device)
    return LoadedModel(
        model=model,
        family=family.name,
        scale=params.get("scale", 1),
        params=params,
        multiple_of=family.multiple_of,
        supports_fp16=family.supports_fp16,
        supports_bf16=family.supports_bf16,
        source=str(path),
    )


def load_weights(model: nn.Module, family: Family, state_dict: dict, path: Path, *, strict: bool) -> None:
    """Load a (remapped) state dict into `model`, leaving out the buffers the family recomputes."""
    state_dict = {k: v for k, v in state_dict.items() if not family.ignored_keys(k)}
    try:
        model.load_state_dict(state_dict, strict=strict)
    except RuntimeError as error:
        raise ModelLoadError(f"{path}: weights do not fit {family.name}: {_summarise(error)}") from None


def _params(family: Family, state_dict: dict, scale: int | None, hint: int | None, path: Path) -> dict:
    try:
        return family.params_from_state_dict(state_dict, scale)
    except MissingHyperParameter as error:
        if scale is None and hint is not None:
            try:
                return family.params_from_state_dict(state_dict, hint)
            except MissingHyperParameter:
                pass
        raise ModelLoadError(f"{path}: {error}") from None


def _summarise(error: RuntimeError) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
