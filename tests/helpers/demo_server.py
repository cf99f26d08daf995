"""Start `sr demo` as its own process on a free localhost port, for the web demo's tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def demo_server(workdir: Path, *args: str, timeout: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, process) of a running `sr demo`, with its model cache and Gradio files under `workdir`."""
    port = free_port()
    env = dict(
        os.environ,
        SR_MODELS_DIR=str(workdir / "models"),
        GRADIO_TEMP_DIR=str(workdir / "gradio"),
        GRADIO_ANALYTICS_ENABLED="False",
    )
    log = open(workdir / "demo.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sr", "demo", "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )
    try:
        deadline = time.monotonic() + timeout
        while "serving on" not in (workdir / "demo.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sr demo did not start:\n{(workdir / 'demo.log').read_text()}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
