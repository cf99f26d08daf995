"""Named pretrained models: where each file is published, its sha256, and a verifying download cache.

Files are cached under `$SR_MODELS_DIR` (default `~/.cache/sr/models`). A file already in that folder with
the right hash is used as is, so tests and offline machines point `SR_MODELS_DIR` at a folder of weights.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sr.atomic import write_atomically


@dataclass(frozen=True)
class ZooEntry:
    name: str
    url: str
    sha256: str
    family: str
    scale: int
    description: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_PAN = "https://github.com/zhaohengyuan1/PAN/raw/4d045d1/experiments/pretrained_models/"
ZOO: dict[str, ZooEntry] = {
    e.name.lower(): e
    for e in (
        ZooEntry(
            "PAN-x2",
            _PAN + "PANx2_DF2K.pth",
            "fcf8ed48656abbaae46309ee91745684b80235a9c8b37a2d8fb0715a3ad3f00f",
            "PAN",
            2,
            "PAN x2, official DF2K weights (Zhao et al. 2020)",
        ),
        ZooEntry(
            "PAN-x3",
            _PAN + "PANx3_DF2K.pth",
            "86491751d73645a8816a0d6ec62ccde6b22ce5da930e36b3b87f5437167fbc89",
            "PAN",
            3,
            "PAN x3, official DF2K weights (Zhao et al. 2020)",
        ),
        ZooEntry(
            "PAN-x4",
            _PAN + "PANx4_DF2K.pth",
            "739fab99ee7b7058dab4d1b84aa2869bb9fc3995a1c08789c20355bee943833c",
            "PAN",
            4,
            "PAN x4, official DF2K weights (Zhao et al. 2020)",
        ),
    )
}


class ZooError(ValueError):
    """A named model that cannot be found, downloaded or verified."""


def models_dir() -> Path:
    return Path(os.environ.get("SR_MODELS_DIR", Path.home() / ".cache" / "sr" / "models"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def lookup(name: str) -> ZooEntry | None:
    return ZOO.get(name.lower())


def by_filename(filename: str) -> ZooEntry | None:
    """The entry published under `filename` (so BasicSR-style paths to missing files can be fetched)."""
    return next((e for e in ZOO.values() if e.filename == filename), None)


def fetch(entry: ZooEntry, *, url: str | None = None) -> Path:
    """The local path of a zoo model, downloading and verifying it on first use."""
    target = models_dir() / entry.filename
    if target.is_file() and sha256_of(target) == entry.sha256:
        return target
    source = url or entry.url

    def download(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(source, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        got = sha256_of(Path(tmp))
        if got != entry.sha256:
            raise ZooError(
                f"{entry.name}: download from {source} has sha256 {got[:12]}…, expected {entry.sha256[:12]}…"
            )

    try:
        write_atomically(target, download, suffix=".part")
    except OSError as error:
        raise ZooError(f"{entry.name}: cannot download {source} ({error})") from None
    return target
