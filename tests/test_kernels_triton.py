"""Runs the Triton-interpreter cases of the kernels tests in a child process started with TRITON_INTERPRET=1.

Triton chooses between compiling and interpreting when it is imported, so the interpreter cannot be switched
on inside this process; the child runs every test whose id contains "interpreter" (fp32 and bf16 parity at
every shape family, the mask gradient, the CPU round trip).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="this run interprets already")
def test_triton_kernels_in_the_interpreter():
    files = [str(TESTS / name) for name in ("test_kernels_parity.py", "test_kernels_api.py")]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "interpreter", *files]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=TESTS.parent, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary
