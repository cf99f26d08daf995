"""From a weight file or a zoo name to a ready network: detection, hyper-parameters, strict loading.

The scale comes from the weights where they hold it; otherwise from the caller, the file's own metadata
(`sr.settings`, written by `sr train`), its zoo entry, then the file name (`PANx3_DF2K.pth`, `4x-HAT-S.pth`);
a still-missing setting is a clear error, never a guess. Settings no weights hold (a family's `unstored`,
e.g. SwinIR's img_range) follow the family's stated rule unless the metadata or the zoo entry gives them.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import archs
from archs import Family, MissingHyperParameter, UnknownArchitecture
from sr import zoo
from sr.checkpoint import CheckpointError, read_settings, read_state_dict


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
    in_channels: int = 3  # 1 for grayscale models, which take and give gray images
    channels_last: bool = False  # the engine feeds NHWC inputs (the model's 4-D weights are NHWC)

    @property
    def task(self) -> str:
        """'sr' for super-resolution models, 'restore' for scale-1 (denoising, JPEG) ones."""
        return "restore" if self.scale == 1 else "sr"


_SCALE_IN_NAME = re.compile(r"(?i)(?:x(\d+)(?![0-9])|(?<![a-z0-9])(\d+)x(?![a-z]))")


def scale_from_filename(name: str) -> int | None:
    """The scale written in a file name (`PANx2_DF2K.pth` → 2), if exactly one is written there."""
    found = {int(a or b) for a, b in _SCALE_IN_NAME.findall(Path(name).stem)}
    found &= {2, 3, 4, 8}
    return found.pop() if len(found) == 1 else None


# Models trained by this project and shipped inside the package, by name: the default super-resolution model
# (PAN x4, options/train/PAN/train_PAN_x4_default.yml), its real-world fine-tune (train_PAN_x4_realworld.yml)
# and one per restoration task (`sr restore --task`).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BUNDLED = {
    "default": "PANx4_default.safetensors",
    "realworld": "PANx4_realworld.safetensors",
    "denoise": "RCAN_denoise_colour_blind.safetensors",
    "jpeg": "RCAN_jpeg_colour_blind.safetensors",
}
DEFAULT_NAME = "default"
DEFAULT_MODEL = WEIGHTS_DIR / BUNDLED[DEFAULT_NAME]


def resolve(path_or_name: str | os.PathLike | None) -> Path:
    """A weight file for a path, a bundled model's name or a zoo name; None is the bundled default model."""
    name = DEFAULT_NAME if path_or_name is None else str(path_or_name)
    if name in BUNDLED:
        bundled = WEIGHTS_DIR / BUNDLED[name]
        if not bundled.is_file():
            raise ModelLoadError(f"{bundled}: the bundled {name!r} model is missing (reinstall sr)")
        return bundled
    path = Path(path_or_name)
    if path.exists():
        return path
    entry = zoo.lookup(name) or zoo.by_filename(path.name)
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
    """Load weights, detect the network, infer its settings and build it in eval mode.

    A zoo model must come out as its entry says (family, scale, settings); one without a published sha256
    is checked that way on first use, then its hash is recorded and required from then on.
    """
    path = resolve(path_or_name)
    bundled = path.parent == WEIGHTS_DIR
    entry = None if bundled else zoo.lookup(str(path_or_name)) or zoo.by_filename(path.name)
    first_use = entry is not None and path == entry.path and not zoo.is_trusted(entry)
    try:
        net = _load(path, entry, scale, device)
    except ModelLoadError:
        if first_use:  # not the file the entry describes: drop it, so a retry downloads it again
            zoo.forget(entry)
        raise
    if first_use:
        digest = zoo.trust(entry, path)
        print(
            f"sr: note: {entry.name}: no published sha256; the file loads as {net.family} with the "
            f"expected settings, so it is trusted on first use (sha256 {digest[:16]}…, recorded in "
            f"{path.name}.sha256)",
            file=sys.stderr,
        )
    return net


def _load(
    path: Path, entry: zoo.ZooEntry | None, scale: int | None, device: str | torch.device
) -> LoadedModel:
    state_dict = _read(path)
    try:
        family = archs.detect_family(state_dict)
    except UnknownArchitecture as error:
        raise ModelLoadError(f"{path}: {error}") from None
    state_dict = family.remap_keys(state_dict)
    settings = {**(entry.settings if entry else {}), **_read_settings(path)}
    hint = scale or settings.get("scale") or (entry and entry.scale) or scale_from_filename(path.name)
    params = _params(family, state_dict, scale, hint, path)
    params.update({key: settings[key] for key in family.unstored if key in settings})
    if entry is not None:
        _check_entry(entry, family, params, path)
    return _build(family, params, state_dict, path, strict=True, device=device)


def _plain(value):
    """Lists as tuples, so settings from JSON compare equal to the ones read off the weights."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _check_entry(entry: zoo.ZooEntry, family: Family, params: dict, path: Path) -> None:
    """A ModelLoadError unless the weights load as the zoo entry describes them."""
    found = {"family": family.name, "scale": params.get("scale", 1)}
    found |= {key: _plain(params.get(key)) for key in entry.settings}
    wanted = {
        "family": entry.family,
        "scale": entry.scale,
        **{k: _plain(v) for k, v in entry.settings.items()},
    }
    wrong = [f"{k} {found[k]!r} (expected {v!r})" for k, v in wanted.items() if found[k] != v]
    if wrong:
        raise ModelLoadError(f"{path}: not the zoo's {entry.name}: {', '.join(wrong)}")


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


def _read_settings(path: Path) -> dict:
    try:
        return read_settings(path)
    except CheckpointError as error:
        raise ModelLoadError(str(error)) from None


def input_channels(model: nn.Module) -> int:
    """How many image channels a network takes (1 gray, 3 RGB): its `num_in_ch` where it says (networks that
    pixel-unshuffle their input, like RRDBNet x1/x2), else those of its first convolution."""
    if isinstance(getattr(model, "num_in_ch", None), int):
        return model.num_in_ch
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return 3 if first is None else first.in_channels


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
    if family.channels_last:
        channels_last_weights(model)
    return LoadedModel(
        model=model,
        family=family.name,
        scale=params.get("scale", 1),
        params=params,
        multiple_of=family.multiple_of,
        supports_fp16=family.supports_fp16,
        supports_bf16=family.supports_bf16,
        source=str(path),
        in_channels=input_channels(model),
        channels_last=family.channels_last,
    )


def channels_last_weights(model: nn.Module) -> nn.Module:
    """`model`, its 4-D parameters and buffers moved to NHWC (channels_last) layout in place."""
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


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
