"""Which models the demo offers, and a small cache of the ones loaded, so switching back costs nothing.

Offered: the bundled models (super-resolution, denoising, JPEG), the zoo's models already downloaded, the
weight or `.onnx` files in the demo's models folder, then the zoo's other models, which are downloaded when
first chosen. Loading goes through `sr.loading` / `sr.onnx.runtime`, as the CLI's does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from sr import zoo
from sr.loading import BUNDLED, WEIGHTS_DIR, LoadedModel, ModelLoadError, load_model

MODEL_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors", ".onnx")
# the task of each bundled model
BUNDLED_TASKS = {"default": "sr", "realworld": "sr", "denoise": "denoise", "jpeg": "jpeg"}


def discover(models_dir: Path | None, task: str | None = None) -> dict[str, str]:
    """Model names as shown to users → the path or name `sr` loads them by.

    The bundled models first (the task's own first of all), the zoo's downloaded models, the folder's files,
    then the zoo models that can be downloaded. With `task` ('sr', 'denoise', 'jpeg'), bundled and zoo models
    of other tasks are left out; folder files, whose task is known only once loaded, are always offered.
    """
    names = [n for n, t in BUNDLED_TASKS.items() if task in (None, t) and (WEIGHTS_DIR / BUNDLED[n]).exists()]
    found = {name: name for name in sorted(names, key=lambda n: BUNDLED_TASKS[n] != (task or "sr"))}
    entries = [e for e in zoo.ZOO.values() if task in (None, e.task)]
    zoo_files = {e.path.resolve() for e in zoo.ZOO.values() if zoo.is_cached(e)}
    found |= {e.name: e.name for e in entries if zoo.is_cached(e)}
    if models_dir is not None and models_dir.is_dir():
        for path in sorted(models_dir.iterdir()):
            if path.suffix.lower() in MODEL_SUFFIXES and path.is_file() and path.resolve() not in zoo_files:
                found.setdefault(path.name, str(path))
    for e in entries:
        if not zoo.is_cached(e) and e.urls and not e.unsupported:
            found.setdefault(e.name, e.name)
    return found


def label(name: str) -> str:
    """How the model list shows a model: zoo models say when they would be downloaded and when their licence
    allows non-commercial use only."""
    entry = zoo.lookup(name)
    if entry is None:
        return name
    notes = []
    if not zoo.is_cached(entry):
        notes.append(f"download{f' {entry.bytes / 1e6:.0f} MB' if entry.bytes else ''}")
    if entry.non_commercial:
        notes.append("non-commercial licence")
    return f"{name} ({', '.join(notes)})" if notes else name


class Engines:
    """Loaded models keyed by (source, backend); beyond `size` the least recently used is dropped."""

    def __init__(self, size: int = 2) -> None:
        self._size = size
        self._loaded: OrderedDict[tuple[str, str], tuple[LoadedModel, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, source: str, backend: str) -> tuple[LoadedModel, str]:
        """The model for `source` on `backend` ('onnx' or 'torch'), and a note when it ran elsewhere.

        `.onnx` files always run on ONNX Runtime. PyTorch weights asked for on ONNX Runtime are exported and
        cached on first use; where that is impossible (onnxruntime not installed, an export failure) the
        model runs on PyTorch and the note says why.
        """
        if source.lower().endswith(".onnx"):
            backend = "onnx"
        key = (source, backend)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            loaded = self._load(source, backend)
            self._loaded[key] = loaded
            while len(self._loaded) > self._size:
                self._loaded.popitem(last=False)
            return loaded

    @staticmethod
    def _load(source: str, backend: str) -> tuple[LoadedModel, str]:
        if backend == "torch":
            return load_model(source), ""
        from sr.onnx.runtime import load_onnx_model

        is_onnx = source.lower().endswith(".onnx")
        try:
            return load_onnx_model(source), ""
        except ImportError as missing:  # onnxruntime/onnx are an optional extra
            if is_onnx:
                raise ModelLoadError(f"{source}: ONNX Runtime is not installed ({missing.name})") from None
            return load_model(source), f"ONNX Runtime is not installed ({missing.name}); ran on PyTorch"
        except ModelLoadError as problem:
            if is_onnx:
                raise
            net = load_model(source)  # raises the clear error when the weights themselves are the problem
            return net, f"no ONNX model ({problem}); ran on PyTorch"
