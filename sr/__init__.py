"""sr: attention super-resolution networks exact to their official checkpoints, with tiled inference.

The public API is loaded lazily so `import sr` stays cheap: `sr.load_model`, `sr.upscale_image`.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("sr.loading", "load_model"),
    "LoadedModel": ("sr.loading", "LoadedModel"),
    "upscale_tensor": ("sr.upscale", "upscale_tensor"),
    "upscale_image": ("sr.upscale", "upscale_image"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'sr' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
