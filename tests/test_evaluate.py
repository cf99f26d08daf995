"""`sr test` reproduces the official PAN checkpoints' numbers on the benchmark files (REFERENCE §3.3, §7)."""

import os
import re
import subprocess
import sys

import pytest

from sr.evaluate import dataset_dirs, evaluate_set, find_pairs

# REFERENCE §7: official network code + official weights on these exact files, metric as §2.
ANCHORS = {
    (2, "Set5"): (38.0007, 0.9605),
    (2, "Set14"): (33.5968, 0.9180),
    (2, "B100"): (32.1893, 0.8998),
    (3, "Set5"): (34.4003, 0.9272),
    (3, "Set14"): (30.3580, 0.8422),
    (3, "B100"): (29.1134, 0.8051),
    (4, "Set5"): (32.1311, 0.8948),
    (4, "Set14"): (28.6148, 0.7822),
    (4, "B100"): (27.5989, 0.7365),
    (4, "Urban100"): (26.1102, 0.7855),
}
SET5_X4 = {"baby": 33.7761, "bird": 35.0000, "butterfly": 28.3496, "head": 32.9625, "woman": 30.5675}


@pytest.fixture(scope="module")
def benchmarks(shared_dir):
    return shared_dir / "data" / "benchmarks"


def test_pan_x4_set5_per_image(pan_x4, benchmarks):
    result = evaluate_set(pan_x4, "Set5", find_pairs(*dataset_dirs("Set5", 4, benchmarks)))
    assert {s.name: round(s.psnr, 4) for s in result.scores} == pytest.approx(SET5_X4, abs=0.005)
    assert result.psnr == pytest.approx(32.1311, abs=0.005)
    assert result.ssim == pytest.approx(0.8948, abs=0.001)


@pytest.mark.slow
@pytest.mark.parametrize(("scale", "name"), sorted(ANCHORS))
def test_pan_anchor(pan_weights, benchmarks, scale, name):
    import sr

    net = sr.load_model(pan_weights / f"PANx{scale}_DF2K.pth")
    result = evaluate_set(net, name, find_pairs(*dataset_dirs(name, scale, benchmarks)))
    want_psnr, want_ssim = ANCHORS[scale, name]
    assert result.psnr == pytest.approx(want_psnr, abs=0.005)
    assert result.ssim == pytest.approx(want_ssim, abs=0.001)


def test_sr_test_with_a_basicsr_options_file(shared_dir, tmp_path):
    """The shipped test options run from a BasicSR-style tree: datasets/ links, zoo fallback for weights."""
    project = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "Set5").symlink_to(shared_dir / "data" / "benchmarks" / "Set5")
    options = tmp_path / "test_PAN_x4_set5.yml"
    text = open(os.path.join(project, "options", "test", "PAN", "test_PAN_x4.yml")).read()
    options.write_text(text.split("  test_2:")[0] + "\nnetwork_g:" + text.split("\nnetwork_g:")[1])
    env = {**os.environ, "SR_MODELS_DIR": str(shared_dir / "weights" / "PAN")}
    result = subprocess.run(
        [sys.executable, "-m", "sr", "test", "-opt", str(options), "--per-image"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"butterfly +28\.3496 ", result.stdout)
    assert re.search(r"mean +32\.1311 +0\.8948 ", result.stdout)


def test_sr_test_reports_missing_sets_on_one_line(pan_weights, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sr",
            "test",
            "-m",
            str(pan_weights / "PANx4_DF2K.pth"),
            "--dataset",
            "Manga109",
            "--datasets-root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"sr: error: Manga109 x4: not found (looked for {tmp_path}/Manga109/HR; see datasets/README.md)"
    )


def test_a_set_without_lr_files_is_scored_on_matlab_made_lr(pan_x4, pan_weights, benchmarks, tmp_path):
    """HR only (Urban100 here has no X2/X3): the LR is made as MATLAB makes it, so on Set5 the scores equal,
    to the bit, those on the MATLAB-made LR files (the EDSR benchmark files)."""
    (tmp_path / "Set5").mkdir()
    (tmp_path / "Set5" / "HR").symlink_to(benchmarks / "Set5" / "HR")
    hr_dir, lr_dir = dataset_dirs("Set5", 4, tmp_path)
    assert lr_dir is None
    made = evaluate_set(pan_x4, "Set5", find_pairs(hr_dir, lr_dir))
    stored = evaluate_set(pan_x4, "Set5", find_pairs(*dataset_dirs("Set5", 4, benchmarks)))
    scores = [[(s.name, s.psnr, s.ssim) for s in result.scores] for result in (made, stored)]
    assert scores[0] == scores[1]
    command = [sys.executable, "-m", "sr", "test", "-m", str(pan_weights / "PANx4_DF2K.pth")]
    result = subprocess.run(
        [*command, "--dataset", "Set5", "--datasets-root", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "LR made from the HR by MATLAB-exact bicubic" in result.stdout
    assert re.search(r"mean +32\.1311 +0\.8948 ", result.stdout)


def test_grayscale_pairs_are_scored_as_replicated_rgb(pan_x4, benchmarks):
    """Set14 `bridge` is mode L in HR and LR: both are replicated to RGB, like OpenCV colour reading."""
    import numpy as np

    from sr.evaluate import score_image
    from sr.imageio import Image, read_image

    lr = read_image(benchmarks / "Set14" / "LR_bicubic" / "X4" / "bridge.png")
    hr = read_image(benchmarks / "Set14" / "HR" / "bridge.png")
    assert lr.pixels.shape[2] == hr.pixels.shape[2] == 1
    lr_crop, hr_crop = lr.pixels[:24, :30], hr.pixels[:96, :120]
    gray, _ = score_image(pan_x4, Image(lr_crop), Image(hr_crop), 4)
    rgb, _ = score_image(pan_x4, Image(np.repeat(lr_crop, 3, 2)), Image(np.repeat(hr_crop, 3, 2)), 4)
    assert gray == rgb
    assert 20 < gray.psnr < 40
