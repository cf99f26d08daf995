"""The bundled default model: shipped in the package, used without -m, and as good as the issue demands
on a benchmark it never trained on."""

import subprocess
import sys

import numpy as np

from sr.evaluate import dataset_dirs, evaluate_set, find_pairs
from sr.imageio import read_image
from sr.loading import DEFAULT_MODEL, load_model


def test_default_model_is_bundled_and_small():
    assert DEFAULT_MODEL.is_file()
    assert DEFAULT_MODEL.stat().st_size < 4 * 2**20
    net = load_model()
    assert (net.family, net.scale) == ("PAN", 4)


def test_default_model_set5_psnr(shared_dir):
    net = load_model()
    hr, lr = dataset_dirs("Set5", 4, shared_dir / "data" / "benchmarks")
    result = evaluate_set(net, "Set5", find_pairs(hr, lr))
    assert result.psnr >= 30.3, result.psnr  # bicubic 28.43, official PAN 32.13


def test_upscale_without_model_uses_default(shared_dir, tmp_path):
    lr = shared_dir / "data" / "benchmarks" / "Set5" / "LR_bicubic" / "X4" / "baby.png"
    out = tmp_path / "baby_x4.png"
    run = subprocess.run(
        [sys.executable, "-m", "sr", "upscale", str(lr), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "x4 with PAN" in run.stdout
    pixels = read_image(out).pixels
    assert pixels.shape == (512, 512, 3) and np.isfinite(pixels).all()


def test_readme_first_command_needs_nothing_beside_the_repository(tmp_path):
    """The README's first command, run where only the repository's samples/ exist (no ../shared)."""
    import re
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    first = re.search(r"```bash\n(.+?)\n```", (root / "README.md").read_text(), re.S).group(1)
    command = first.split("&& .venv/bin/sr ")[-1].split()
    assert command[0] == "upscale" and command[1] == "samples/astronaut.png", first
    shutil.copytree(root / "samples", tmp_path / "samples")
    run = subprocess.run(
        [sys.executable, "-m", "sr", *command], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "upscaled 1 of 1 file(s) x4 with PAN" in run.stdout
    out = read_image(tmp_path / command[command.index("-o") + 1])
    assert out.pixels.shape == (512, 512, 3)
