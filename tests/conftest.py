"""Shared test fixtures: the data folder beside the project (``../shared``, or ``$SR_SHARED``) and models.

Outside CI, tests needing ../shared skip when it is absent; in CI (CI=true) its absence is a failure.
"""

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("SR_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data/weights folder."""
    if not SHARED.is_dir():
        message = f"shared data folder {SHARED} is absent (set SR_SHARED to its location)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SHARED


@pytest.fixture(scope="session")
def pan_weights(shared_dir: Path) -> Path:
    """Folder of the official PAN checkpoints."""
    return shared_dir / "weights" / "PAN"


@pytest.fixture(scope="session")
def pan_x4(pan_weights: Path):
    """The official PAN x4, loaded once per test session."""
    import sr

    return sr.load_model(pan_weights / "PANx4_DF2K.pth")


@pytest.fixture(scope="session")
def real_lr(shared_dir: Path):
    """A 180x230 crop of a DIV2K training LR image as a 1x3xHxW tensor (real content: trained SR nets
    diverge on i.i.d. noise)."""
    from sr.imageio import read_image
    from sr.upscale import image_to_tensor

    image = read_image(shared_dir / "data" / "DIV2K_smoke" / "LR_bicubic" / "X4" / "0004.png")
    return image_to_tensor(image.pixels[90:270, 180:410])
