"""The perceptual loss's VGG weights: torchvision's release file, read without torchvision.

Looked for in order: the options' `perceptual_opt.vgg_weights`; BasicSR's place for it
(`experiments/pretrained_models/<file>`, as `basicsr/archs/vgg_arch.py` checks); the model cache
(`$SR_MODELS_DIR`); else downloaded there from torchvision's address. torchvision names its files
`<arch>-<first 8 hex digits of the sha256>.pth` and checks that prefix on download; so does this.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from sr.checkpoint import read_state_dict

TORCHVISION_URLS = {"vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"}
BASICSR_FOLDER = Path("experiments") / "pretrained_models"


class VGGWeightsError(ValueError):
    """The VGG file is missing, cannot be fetched, or fails its hash check; one line."""


def _hash_prefix(name: str) -> str | None:
    found = re.search(r"-([0-9a-f]{8,})\.", name)
    return found.group(1) if found else None


def fetch(url: str, folder: Path) -> Path:
    """`url`'s file in `folder`, downloaded (resuming a partial one) and checked against the sha256 prefix
    its name carries, then moved into place; an existing file is returned as it is."""
    from sr.download import DownloadError, download
    from sr.zoo import sha256_of

    target = folder / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    try:
        part = download(url, target, label=target.name)
    except DownloadError as error:
        raise VGGWeightsError(f"VGG weights for the perceptual loss: {error}") from None
    prefix = _hash_prefix(target.name)
    digest = sha256_of(part)
    if prefix and not digest.startswith(prefix):
        part.unlink()
        raise VGGWeightsError(f"{url}: sha256 {digest[:12]}… does not start with {prefix} (file removed)")
    part.replace(target)
    return target


def vgg_state_dict(vgg_type: str, path: str | None, *, models_dir: Path, url: str | None = None) -> dict:
    """The state dict (torchvision's `features.*` keys) for `vgg_type`, found or fetched as said above."""
    if path is None:
        url = url or TORCHVISION_URLS.get(vgg_type)
        if url is None:
            raise VGGWeightsError(
                f"no known download for {vgg_type}; give perceptual_opt.vgg_weights (a torchvision file)"
            )
        name = url.rsplit("/", 1)[-1]
        found = [p for p in (BASICSR_FOLDER / name, models_dir / name) if p.is_file()]
        path = str(found[0] if found else fetch(url, models_dir))
    try:
        return {k: v.to(torch.float32) for k, v in read_state_dict(path).items()}
    except ValueError as error:
        raise VGGWeightsError(f"VGG weights: {error}") from None
