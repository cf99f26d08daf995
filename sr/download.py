"""HTTP downloads for the model zoo: a progress bar, resuming after a dropped connection or an interrupted
run, Google Drive's confirmation page, and the complete file only ever under its final name.

Bytes go to `<name>.part` beside the target; a later attempt (the same run after a dropped connection, or a
new run) asks the server for the rest with a Range request, and starts over when the server ignores it.
The caller checks the finished `.part` file and moves it into place (`finish`).
"""

from __future__ import annotations

import html
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

# Google Drive files are addressed as `gdrive:<id>` in the catalogue.
DRIVE = "https://drive.usercontent.google.com/download"
ATTEMPTS = 4
CHUNK = 1 << 20
TIMEOUT = 60


class DownloadError(OSError):
    """A download that failed after its retries; the message is one line."""


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def resolve_url(url: str) -> str:
    """The HTTP address of a catalogue URL (`gdrive:<id>` → Drive's direct download endpoint)."""
    if url.startswith("gdrive:"):
        return f"{DRIVE}?{urllib.parse.urlencode({'id': url[7:], 'export': 'download'})}"
    return url


def download(url: str, target: Path, *, label: str, size: int | None = None) -> Path:
    """Fetch `url` into `target`'s `.part` file, resuming what is there; returns the `.part` path.

    Dropped connections are retried from where they stopped (ATTEMPTS in all); Drive's "cannot scan this
    file for viruses" page is answered as a browser would, by submitting its download form.
    """
    part = part_path(target)
    part.parent.mkdir(parents=True, exist_ok=True)
    address, problem = resolve_url(url), None
    for _ in range(ATTEMPTS):
        try:
            complete, address = _transfer(address, part, label, size)
            if complete:
                return part
            problem = "the connection closed before the end of the file"
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
            problem = f"the connection dropped ({type(error).__name__})"
        except urllib.error.HTTPError as error:
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise DownloadError(f"{url}: {error.reason}") from None
    raise DownloadError(
        f"{url}: {problem}, {ATTEMPTS} attempts; rerun to continue from {part.stat().st_size} bytes"
    )


def _transfer(address: str, part: Path, label: str, size: int | None) -> tuple[bool, str]:
    """One request appending to `part` from its current size: (whole file there, the address that served
    it, to ask again after a drop)."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    response = _open(address, offset)
    with response:
        if offset and response.status != 206:  # the server sent the whole file: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        mode = "ab" if offset else "wb"
        with (
            open(part, mode) as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=None,
                file=sys.stderr,
                leave=False,
            ) as bar,
        ):
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    return total is None or part.stat().st_size >= total, response.url_used


class _Response:
    """An HTTP response with the address that finally served it (after Drive's form, if any)."""

    def __init__(self, raw, url_used: str) -> None:
        self.raw, self.url_used = raw, url_used
        self.status, self.headers = raw.status, raw.headers

    def read(self, n: int) -> bytes:
        return self.raw.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.raw.close()


def _request(address: str, offset: int):
    request = urllib.request.Request(address, headers={"User-Agent": "sr-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=TIMEOUT)


def _open(address: str, offset: int) -> _Response:
    raw = _request(address, offset)
    if raw.headers.get_content_type() == "text/html" and "download" in address:
        page = raw.read(1 << 20).decode("utf-8", "replace")
        raw.close()
        confirmed = _confirmation_url(page, address)
        if confirmed is None:
            raise DownloadError(f"{address}: the server answered with a web page, not the file")
        return _Response(_request(confirmed, offset), confirmed)
    return _Response(raw, address)


_FORM = re.compile(r"<form[^>]*\baction=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S | re.I)
_INPUT = re.compile(r"<input[^>]*\bname=\"([^\"]+)\"[^>]*\bvalue=\"([^\"]*)\"", re.I)


def _confirmation_url(page: str, address: str) -> str | None:
    """The download address behind Drive's warning page: its form's action with its hidden fields."""
    for action, body in _FORM.findall(page):
        fields = dict(_INPUT.findall(body))
        if "id" in fields:
            action = urllib.parse.urljoin(address, html.unescape(action))
            query = urllib.parse.urlencode({k: html.unescape(v) for k, v in fields.items()})
            return f"{action}?{query}"
    return None


def finish(part: Path, target: Path) -> Path:
    """Move a checked `.part` file into place (atomic on one file system)."""
    os.replace(part, target)
    return target
