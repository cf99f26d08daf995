"""Named pretrained models: the catalogue (`zoo.json`, every official file of the papers we follow) and a
verifying download cache.

An entry gives where the file is published (direct URLs, Google Drive ids as `gdrive:<id>`, mirrors; or only
a page to fetch it from by hand), the member to take from a zip, the sha256 where a source states one (or
the git blob SHA-1 of files committed to the authors' repositories), licence, and the settings its weights
cannot tell. Files are cached under `$SR_MODELS_DIR` (default `~/.cache/sr/models`).

A file with a published hash is checked against it. A file without one is trusted on first use: the loader
checks what it loads (family and settings), then `trust` records the file's sha256 beside it
(`<file>.sha256`), and every later use must match that record.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from sr.atomic import write_atomically

CATALOGUE = Path(__file__).resolve().parent / "zoo.json"
TASKS = {"sr": "super-resolution", "denoise": "denoising", "jpeg": "JPEG artifact removal"}
NON_COMMERCIAL = "-NC-"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    scale: int
    filename: str | None
    description: str
    urls: tuple[str, ...] = ()
    page: str | None = None  # where a person can fetch the file when no URL downloads it
    member: str | None = None  # the file's path inside the zip that `urls` download
    sha256: str | None = None  # None: no trustworthy source states it; trusted on first use
    git_sha1: str | None = None  # the git blob id of a file committed to the authors' repository
    bytes: int | None = None
    task: str = "sr"
    licence: str = ""
    unsupported: str | None = None  # why sr cannot load it (yet)
    # Settings the loaded network must have; those its family cannot read off the weights (`unstored`,
    # e.g. SwinIR's img_range) are applied from here.
    settings: dict = field(default_factory=dict, hash=False)

    @property
    def non_commercial(self) -> bool:
        return NON_COMMERCIAL in self.licence

    @property
    def path(self) -> Path:
        """Where the file is cached."""
        return models_dir() / (self.filename or self.name)


def _load_catalogue() -> dict[str, ZooEntry]:
    entries = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return {e["name"].lower(): ZooEntry(**{**e, "urls": tuple(e["urls"])}) for e in entries}


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


def git_sha1_of(path: Path) -> str:
    """Git's blob id of a file: sha1 of 'blob <size>\\0' followed by its bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
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
    record = _record(entry.path)
    return record.read_text().split()[0] if record.is_file() else None


def is_trusted(entry: ZooEntry) -> bool:
    """Whether the cached file has been verified: against a published hash, or on first use."""
    return expected_sha256(entry) is not None


def is_cached(entry: ZooEntry) -> bool:
    return entry.path.is_file()


def trust(entry: ZooEntry, path: Path) -> str:
    """Record `path`'s hash as the one every later use of `entry` must match; returns it."""
    digest = sha256_of(path)
    write_atomically(_record(path), lambda tmp: Path(tmp).write_text(f"{digest}  {path.name}\n"))
    return digest


def _matches(entry: ZooEntry, path: Path) -> str | None:
    """None if `path` has the hash `entry` must have (or none is known), else what differs."""
    expected = expected_sha256(entry)
    if expected is not None:
        got = sha256_of(path)
        return None if got == expected else f"sha256 {got[:12]}…, expected {expected[:12]}…"
    if entry.git_sha1 and not entry.member:
        got = git_sha1_of(path)
        return None if got == entry.git_sha1 else f"git blob id {got[:12]}…, expected {entry.git_sha1[:12]}…"
    return None


def fetch(entry: ZooEntry, *, urls: tuple[str, ...] | None = None) -> Path:
    """The local path of a zoo model, downloading it on first use (with progress, resuming an interrupted
    download) and checking it against the hash it must have (published or recorded). A file with neither is
    returned unverified: check it, then `trust` it. `urls` replaces the entry's (tests)."""
    from sr.download import DownloadError

    if entry.unsupported:
        raise ZooError(f"{entry.name}: sr cannot load this file: {entry.unsupported}")
    target = entry.path
    if target.is_file():
        if _matches(entry, target) is None:
            return target
        target.unlink()
    sources = entry.urls if urls is None else urls
    if not sources:
        raise ZooError(
            f"{entry.name}: no direct download; fetch {entry.filename} from {entry.page} and put it in "
            f"{target.parent}"
        )
    problems = []
    for url in sources:
        try:
            return _fetch_from(entry, url, target)
        except (DownloadError, ZooError) as problem:
            problems.append(str(problem))
    hint = f" (or fetch it by hand from {entry.page} into {target.parent})" if entry.page else ""
    raise ZooError(f"{entry.name}: cannot download: {'; '.join(problems)}{hint}")


def _fetch_from(entry: ZooEntry, url: str, target: Path) -> Path:
    from sr.download import download, finish

    if entry.member:  # a zip holding several models: keep it, take the member out
        archive = target.with_name(url.split("/")[-1].split("?")[0] if "/" in url else entry.name + ".zip")
        if not archive.is_file():
            finish(download(url, archive, label=archive.name), archive)
        try:
            with zipfile.ZipFile(archive) as zipped:
                data = zipped.read(entry.member)
        except (zipfile.BadZipFile, KeyError) as error:
            archive.unlink(missing_ok=True)
            raise ZooError(f"{url}: no {entry.member} in the archive ({error})") from None
        write_atomically(target, lambda tmp: Path(tmp).write_bytes(data))
        return target
    part = download(url, target, label=entry.filename or entry.name, size=entry.bytes)
    wrong = _matches(entry, part)
    if wrong:
        part.unlink(missing_ok=True)
        raise ZooError(f"{url}: the download has {wrong}")
    return finish(part, target)


def forget(entry: ZooEntry) -> None:
    """Drop a cached file that failed its first-use check (and its record), so a retry downloads it again."""
    entry.path.unlink(missing_ok=True)
    _record(entry.path).unlink(missing_ok=True)
