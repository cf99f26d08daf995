"""Builds the CPU kernel libraries (fused_cpu.cpp: window attention; kernels/sort_cpu.cpp: row sorts;
kernels/dynamic_conv_cpu.cpp: DLGSANet's dynamic convolution) once per machine, caches and loads them.

The library is compiled for the CPU it runs on (-march=native) and linked to the installed torch's libraries,
so `at::parallel_for` runs on torch's own thread pool. Files are cached under `$SR_KERNELS_DIR` (default
`~/.cache/sr/kernels`), named by a hash of the source, the flags, the compiler, torch's version and the
CPU's feature flags: a changed source, compiler, torch or machine builds a new file, and a shared home
directory never hands one machine a library built for another's instruction set. Builds write a temporary
file and rename it, so processes building at once never load a half-written library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("fused_cpu.cpp")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
BUILD_TIMEOUT_S = 300


class BuildError(RuntimeError):
    """The library could not be built; the message says why in one line."""


def cache_dir() -> Path:
    return Path(os.environ.get("SR_KERNELS_DIR", Path.home() / ".cache" / "sr" / "kernels"))


def compiler() -> str:
    """The C++ compiler: $CXX, else c++ or g++ on the PATH. Raises BuildError when there is none."""
    named = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not named:
        raise BuildError("no C++ compiler found (set CXX, or install g++)")
    return named


def load(source: Path, what: str, fallback: str) -> tuple[ctypes.CDLL | None, str | None]:
    """The library built from `source`, loaded, and None; or None and why not ("could not build it: …"),
    after a RuntimeWarning naming `what` and the `fallback` used instead. Callers cache the answer, so a
    process warns once."""
    try:
        return ctypes.CDLL(str(build(source=source))), None
    except (BuildError, OSError) as error:
        reason = f"could not {'build' if isinstance(error, BuildError) else 'load'} it: {error}"
        warnings.warn(f"{what}: {reason}; using {fallback}", RuntimeWarning, stacklevel=3)
        return None, reason


def entry_point(
    source: Path, what: str, fallback: str, symbol: str, argtypes: list
) -> Callable[..., int] | None:
    """`symbol` (returning a C int status) of the library `load` gives, or None where it gives none."""
    library, _ = load(source, what, fallback)
    if library is None:
        return None
    function = getattr(library, symbol)
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return function


def build(directory: Path | None = None, source: Path | None = None) -> Path:
    """The path of the library built from `source` (default: the window-attention kernel, `SOURCE`),
    compiling it first unless this machine's build is cached."""
    source = source or SOURCE
    cxx = compiler()
    torch_dir = Path(torch.__file__).parent
    command = [
        cxx, *FLAGS, f"-I{torch_dir / 'include'}", str(source), f"-L{torch_dir / 'lib'}",
        "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}",
    ]  # fmt: skip
    target = (directory or cache_dir()) / f"{source.stem}-{_fingerprint(cxx, command, source)}.so"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(handle)
    except OSError as error:
        raise BuildError(f"cannot write to {target.parent}: {error.strerror or error}") from None
    try:
        result = subprocess.run(
            [*command, "-o", partial], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
        if result.returncode != 0:
            lines = result.stderr.splitlines()
            first = next((line for line in lines if "error" in line), lines[0] if lines else "no output")
            raise BuildError(f"{Path(cxx).name} failed on {source.name}: {first.strip()}")
        os.replace(partial, target)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{Path(cxx).name} took over {BUILD_TIMEOUT_S} s on {source.name}") from None
    except OSError as error:
        raise BuildError(f"cannot run {cxx}: {error.strerror or error}") from None
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def _fingerprint(cxx: str, command: list[str], source: Path) -> str:
    digest = hashlib.sha256(source.read_bytes())
    digest.update("\0".join(command).encode())
    digest.update(torch.__version__.encode())
    digest.update(_compiler_version(cxx).encode())
    digest.update(_cpu_flags().encode())
    return digest.hexdigest()[:16]


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BuildError(f"cannot run {cxx}: {getattr(error, 'strerror', None) or error}") from None


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next((line for line in info if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""
