"""Reading weight files safely into a flat state dict of tensors.

`.pth/.pt/.ckpt` go through `torch.load(weights_only=True)` only, so a pickle that needs arbitrary objects is
refused and never executed; `.safetensors` through safetensors. Wrappers are unwrapped EMA first, as BasicSR
and spandrel do, and DataParallel / GAN prefixes are stripped.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

# Checked in this order at each level: EMA weights win over raw ones (BasicSR saves both).
WRAPPER_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "netG.")
SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


class CheckpointError(ValueError):
    """A weight file that cannot be read as a state dict; the message is one line naming the file."""


def read_state_dict(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and with prefixes stripped.

    `key` picks a top-level entry (BasicSR's `param_key_g`, e.g. 'params'); by default EMA weights win.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.suffix.lower() == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = _read_torch(path)
    if key is not None:
        if not isinstance(raw, dict) or not isinstance(raw.get(key), dict):
            names = list(map(str, raw)) if isinstance(raw, dict) else [type(raw).__name__]
            keys = ", ".join(names[:6]) + (f", ... ({len(names)} entries)" if len(names) > 6 else "")
            raise CheckpointError(f"{path}: has no '{key}' entry (top level: {keys})")
        raw = raw[key]
    return _flatten(raw, path)


SETTINGS_KEY = "sr.settings"  # safetensors metadata: JSON of the settings the weights cannot tell


def read_settings(path: str | os.PathLike) -> dict:
    """The settings a `.safetensors` file records in its `sr.settings` metadata (`sr train` writes them:
    scale, and e.g. SwinIR's img_range); {} for other files or none recorded."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return {}
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(SETTINGS_KEY)
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a valid safetensors file ({_first_line(error)})") from None
    if text is None:
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError:
        settings = None
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: its {SETTINGS_KEY} metadata is not a JSON object")
    return settings


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a valid safetensors file ({_first_line(error)})") from None
    return _nest_wrappers(tensors)


def _nest_wrappers(tensors: dict) -> dict:
    """Training checkpoints store `params.<key>` and `params_ema.<key>` in one flat file: group them."""
    groups: dict[str, dict] = {}
    for name, value in tensors.items():
        head, _, rest = name.partition(".")
        if head not in WRAPPER_KEYS or not rest:
            return tensors
        groups.setdefault(head, {})[rest] = value
    if all(k.split(".")[0].isdigit() for k in groups.get("model", {"x": 0})):
        return tensors  # `model.0.weight`, ...: an nn.Sequential named model (the original ESRGAN's layout)
    return groups


def _read_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if _calls_python_objects(path):
            raise CheckpointError(
                f"{path}: refused: the pickle would create arbitrary Python objects (unsafe; only plain "
                "weight files are loaded, convert it with a trusted tool)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_first_line(error)})") from None


_OBJECT_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD"}


def _calls_python_objects(path: Path) -> bool:
    """Whether the pickle stream (legacy file, or data.pkl of a zip checkpoint) imports or calls objects.

    Only disassembles the opcodes; nothing is executed. A stream that is not a pickle at all gives False.
    """
    data = path.read_bytes()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return False
            data = archive.read(name)
    try:
        return any(op.name in _OBJECT_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:  # noqa: BLE001 - any malformed stream just means "not a pickle"
        return False


def _flatten(raw: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(raw, dict):
        inner = next((raw[k] for k in WRAPPER_KEYS if isinstance(raw.get(k), dict)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a dict of weights")
    tensors = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: contains no weight tensors")
    return {_strip_prefixes(k): v for k, v in tensors.items()}


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
