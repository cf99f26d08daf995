"""A stand-in `torchvision` so spandrel imports in tests: its wheel needs torchvision, which cannot run here.

Only the names spandrel binds at import time exist (for LaMa and RestoreFormer, which tests never run).
"""

from __future__ import annotations

import enum
import sys
import types


def _unavailable(*args: object, **kwargs: object) -> None:
    raise RuntimeError("torchvision is a test stub here; this spandrel architecture cannot run")


def install() -> None:
    """Put the stub into `sys.modules` unless some `torchvision` is already imported."""
    if "torchvision" in sys.modules:
        return
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = enum.Enum("InterpolationMode", "NEAREST BILINEAR BICUBIC")
    functional.rotate = _unavailable
    functional.normalize = _unavailable
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    torchvision = types.ModuleType("torchvision")
    torchvision.__version__ = "0.0.0+stub"
    torchvision.transforms = transforms
    sys.modules.update({"torchvision": torchvision, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional})
