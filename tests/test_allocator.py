"""sr.allocator: with freed memory kept, repeated large CPU temporaries stop page-faulting (glibc only),
and the engine turns it on for CPU inference."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import sr
from sr import allocator
from sr.upscale import upscale_tensor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# A child process (the setting cannot be undone): page faults per forward of a small CFSR at 64x64, after a
# warm-up, the way the engine runs it.
FAULTS = """
import json, resource, sys, torch
if sys.argv[1] == "keep":
    from sr.allocator import keep_freed_memory
    assert keep_freed_memory()
from archs.cfsr import CFSR
torch.set_num_threads(2)
model = CFSR(embed_dim=48, depths=(2,), scale=2).eval()
x = torch.rand(1, 3, 64, 64)
with torch.inference_mode():
    model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3))
"""


def _faults(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_kept_memory_stops_the_page_faults_of_each_forward():
    """Measured (2 threads): 1700-2900 faults per forward with glibc's defaults (temporaries of 0.8-1.5 MiB
    handed back, by the worker threads' arenas too, and faulted in again), 130-380 kept."""
    default, kept = _faults("default"), _faults("keep")
    assert default > 800
    assert kept < default / 2


def test_the_engine_keeps_freed_memory_on_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr("sr.upscale.keep_freed_memory", lambda: calls.append(1))
    net = sr.load_model("default")
    upscale_tensor(net, torch.rand(1, 3, 8, 8))
    assert calls == [1]


def test_applying_twice_is_harmless():
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()


def test_training_keeps_freed_memory(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr("sr.allocator.keep_freed_memory", lambda: calls.append(1))
    from sr.cli import main

    assert main(["train", "-opt", str(tmp_path / "missing.yml")]) == 1
    assert calls == [1]
    assert "missing.yml" in capsys.readouterr().err
