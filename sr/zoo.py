"""Named pretrained models: the catalogue (`zoo.json`: where each file is published, its sha256 where a
source states one, licence and the settings its weights cannot tell) and a verifying download cache.

Files are cached under `$SR_MODELS_DIR` (default `~/.cache/sr/models`). A file whose sha256 is published is
checked against it. A file without one is trusted on first use: the caller checks what it loads (family and
settings), then `trust` records the file's hash beside it (`<file>.sha256`), and every later use must match
that record. Tests and offline machines point `SR_MODELS_DIR` at a folder of weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from sr.atomic import write_atomically

CATALOGUE = Path(__file__).resolve().parent / "zoo.json"
TASKS = {"sr": "super-resolution", "denoise": "denoising", "jpeg": "JPEG artifact removal"}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    url: str
    sha256: str | None  # None: no source states it; trusted on first use
    family: str
    scale: int
    description: str
    task: str = "sr"
    licence: str = ""
    bytes: int | None = None
    # Settings the loaded network must have; those its family cannot read off the weights (`unstored`, e.g.
    # SwinIR's img_range) are applied from here.
    settings: dict = field(default_factory=dict, hash=False)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _load_catalogue() -> dict[str, ZooEntry]:
    entries = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return {e["name"].lower(): ZooEntry(**e) for e in entries}


ZOO: dict[str, ZooEntry] = _load_catalogue()


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


def _record(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def expected_sha256(entry: ZooEntry) -> str | None:
    """The published hash, else the one recorded when the file was first trusted, else None."""
    if entry.sha256:
        return entry.sha256
    record = _record(models_dir() / entry.filename)
    return record.read_text().split()[0] if record.is_file() else None


def is_trusted(entry: ZooEntry) -> bool:
    """Whether the cached file has been verified: against a published hash, or on first use."""
    return expected_sha256(entry) is not None


def trust(entry: ZooEntry, path: Path) -> str:
    """Record `path`'s hash as the one every later use of `entry` must match; returns it."""
    digest = sha256_of(path)
    write_atomically(_record(path), lambda tmp: Path(tmp).write_text(f"{digest}  {path.name}\n"))
    return digest


def fetch(entry: ZooEntry, *, url: str | None = None) -> Path:
    """The local path of a zoo model, downloading it on first use and checking it against the hash it must
    have (published or recorded). A file with neither is returned unverified: check it, then `trust` it."""
    target = models_dir() / entry.filename
    expected = expected_sha256(entry)
    if target.is_file() and (expected is None or sha256_of(target) == expected):
        return target
    source = url or entry.url

    def download(tmp: str) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(source, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        if expected is not None:
            got = sha256_of(Path(tmp))
            if got != expected:
                raise ZooError(
                    f"{entry.name}: download from {source} has sha256 {got[:12]}…, expected {expected[:12]}…"
                )

    try:
        write_atomically(target, download, suffix=".part")
    except OSError as error:
        raise ZooError(f"{entry.name}: cannot download {source} ({error})") from None
    return target
