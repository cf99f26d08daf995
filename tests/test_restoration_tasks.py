"""`sr test --task denoise|jpeg` and restoration training: the official protocol's inputs, an identity network
that must score exactly its input, argument errors, and a few training iterations on degraded patches."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import sr
from archs.swinir import SwinIR
from sr.cli import main
from sr.data.datasets import DegradedHRDataset
from sr.data.degradations import jpeg
from sr.evaluate import DatasetError
from sr.imageio import Image, write_image
from sr.options import DatasetOptions, OptionsError, load_train_options
from sr.tasks import Denoise, EvalSet, evaluate_restoration

ROOT = Path(__file__).resolve().parents[1]


def identity_model(path: Path, in_chans: int = 3) -> Path:
    """A scale-1 SwinIR whose last conv is zero: its output is its input (the official residual form)."""
    model = SwinIR(
        scale=1, in_chans=in_chans, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, upsampler=""
    )
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
    torch.save({"params": model.state_dict()}, path)
    return path


@pytest.fixture
def sets_root(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "sets"
    for name, channels in (("Mini", 3), ("MiniGray", 1)):
        (root / name).mkdir(parents=True)
        for i in range(2):
            smooth = cv2.GaussianBlur(rng.random((40 + 8 * i, 48, channels)).astype(np.float32), (9, 9), 3)
            write_image(root / name / f"img{i}.png", Image(smooth.reshape(40 + 8 * i, 48, channels)))
    return root


def test_identity_network_scores_exactly_its_degraded_input(tmp_path, sets_root):
    net = sr.load_model(identity_model(tmp_path / "id.pth"))
    files = sorted((sets_root / "Mini").iterdir())
    result = evaluate_restoration(net, EvalSet("Mini", files), Denoise(25))
    for scores in result.scores:
        for metric in ("psnr", "ssim"):
            assert scores.restored[metric] == pytest.approx(scores.degraded[metric], abs=1e-9)
    # The input PSNR by hand: seed-0 noise on the BGR image, quantized for scoring.
    clean = cv2.imread(str(files[0]))  # BGR, as the official script reads it
    np.random.seed(0)
    noisy = clean.astype(np.float32) / 255 + np.random.normal(0, 25 / 255, clean.shape)
    noisy = np.round(np.clip(noisy, 0, 1) * 255)
    expected = 10 * math.log10(255**2 / np.mean((noisy - clean) ** 2))
    assert result.scores[0].degraded["psnr"] == pytest.approx(expected, abs=1e-9)


def test_sr_test_restoration_tasks(tmp_path, sets_root, capsys):
    model = str(identity_model(tmp_path / "id.pth"))
    root = str(sets_root)
    code = main(
        [
            "test",
            "--task",
            "denoise",
            "--sigma",
            "15",
            "50",
            "-m",
            model,
            "--dataset",
            "Mini",
            "MiniGray",
            "--datasets-root",
            root,
            "--per-image",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Mini denoise sigma 15" in out and "MiniGray denoise sigma 50" in out and "summary" in out
    assert out.count("img0") == 4
    code = main(
        [
            "test",
            "--task",
            "jpeg",
            "--quality",
            "10",
            "-m",
            model,
            "--dataset",
            "Mini",
            "--datasets-root",
            root,
            "--save",
            str(tmp_path / "saved"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "PSNR-B" in out
    saved = sorted((tmp_path / "saved" / "Mini").rglob("*.png"))
    assert [p.name for p in saved] == ["img0.png", "img1.png"]
    # An identity network's output is the JPEG itself.
    clean = cv2.imread(str(sets_root / "Mini" / "img0.png"))[..., ::-1]
    np.testing.assert_array_equal(cv2.imread(str(saved[0]))[..., ::-1], jpeg(np.ascontiguousarray(clean), 10))


def test_sr_test_with_restoration_options(tmp_path, sets_root, capsys):
    model = identity_model(tmp_path / "id.pth")
    options = tmp_path / "test.yml"
    options.write_text(f"""
name: identity
model_type: SwinIRModel
scale: 1
datasets:
  test_1: {{name: Mini, type: DegradedHRDataset, dataroot_gt: {sets_root / "Mini"}, jpeg_quality: 20}}
  test_2: {{name: MiniGray, type: DegradedHRDataset, dataroot_gt: {sets_root / "MiniGray"}, noise_sigma: 15}}
network_g: {{type: SwinIR, scale: 1, embed_dim: 12, depths: [1], num_heads: [2], window_size: 4,
            upsampler: ''}}
path: {{pretrain_network_g: {model}, param_key_g: params}}
val:
  metrics: {{psnr: {{type: calculate_psnr, crop_border: 0}}}}
""")
    assert main(["test", "-opt", str(options)]) == 0
    out = capsys.readouterr().out
    assert "Mini jpeg quality 20" in out and "MiniGray denoise sigma 15" in out and "summary" in out
    options.write_text(options.read_text().replace("jpeg_quality: 20", "jpeg_quality: [10, 20]"))
    assert main(["test", "-opt", str(options)]) == 2
    assert "exactly one fixed noise_sigma or jpeg_quality" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--task", "denoise", "--sigma", "0"], "--sigma: noise sigma 0 is out of range"),
        (["--task", "denoise", "--sigma", "300"], "--sigma: noise sigma 300 is out of range"),
        (["--task", "jpeg", "--quality", "0"], "--quality: JPEG quality 0 is out of range"),
        (["--task", "jpeg", "--quality", "101"], "--quality: JPEG quality 101 is out of range"),
        (["--task", "denoise", "--quality", "10"], "--quality: only for --task jpeg"),
        (["--task", "jpeg", "--sigma", "25"], "--sigma/--clip-noise: only for --task denoise"),
        (["--sigma", "25", "-m", "x.pth"], "--sigma: only for --task denoise or jpeg"),
        (["--task", "denoise", "--dataset", "Nowhere"], "Nowhere: test set not found"),
    ],
)
def test_bad_restoration_arguments_are_one_line(argv, problem, sets_root, capsys):
    assert main(["test", *argv, "--datasets-root", str(sets_root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and problem in err[0], err


def test_sr_model_is_refused_for_restoration_tasks(pan_weights, sets_root, capsys):
    argv = [
        "test",
        "--task",
        "denoise",
        "-m",
        str(pan_weights / "PANx4_DF2K.pth"),
        "--dataset",
        "Mini",
        "--datasets-root",
        str(sets_root),
    ]
    assert main(argv) == 2
    assert "needs a scale-1 model" in capsys.readouterr().err


def test_gray_model_on_a_colour_set_sees_the_official_gray(tmp_path, sets_root, capsys):
    model = str(identity_model(tmp_path / "gray.pth", in_chans=1))
    assert (
        main(
            ["test", "--task", "denoise", "-m", model, "--dataset", "Mini", "--datasets-root", str(sets_root)]
        )
        == 0
    )
    assert "SwinIR gray" in capsys.readouterr().out


def _dataset(**options) -> DegradedHRDataset:
    opt = DatasetOptions(name="t", type="DegradedHRDataset", gt_size=48, **options)
    return DegradedHRDataset(opt, 1, "test")


def test_degraded_patches_are_deterministic_and_as_asked(shared_dir):
    root = str(shared_dir / "data" / "restoration" / "Classic5")
    noisy = _dataset(dataroot_gt=root, noise_sigma=20)
    a, b = noisy[(1, 7)], noisy[(1, 7)]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(a["lq"], noisy[(1, 8)]["lq"])
    assert a["gt"].shape == (3, 48, 48)  # gray files replicated for a colour model
    residual = torch.cat([noisy[(i % 5, i)]["lq"] - noisy[(i % 5, i)]["gt"] for i in range(40)])
    assert abs(residual.std().item() * 255 - 20) < 0.5  # unclipped Gaussian noise of sigma 20
    clipped = _dataset(dataroot_gt=root, noise_sigma=[5, 50], noise_clip_prob=1.0)[(0, 3)]["lq"]
    assert clipped.min() >= 0 and clipped.max() <= 1
    assert torch.equal(torch.round(clipped * 255), clipped * 255)
    gray = _dataset(dataroot_gt=root, jpeg_quality=[10, 30], color="gray")[(2, 5)]
    assert gray["lq"].shape == (1, 48, 48)


def test_jpeg_patches_are_crops_of_the_whole_compressed_image(shared_dir):
    root = shared_dir / "data" / "restoration" / "Classic5"
    dataset = _dataset(dataroot_gt=str(root), jpeg_quality=20, color="gray")
    for seed in range(6):
        sample = dataset[(0, seed)]
        gt = np.round(sample["gt"][0].numpy() * 255).astype(np.uint8)
        clean = cv2.imread(str(dataset.files[0]), cv2.IMREAD_UNCHANGED)
        # Undo the random flips/transpose: find the patch among the 8 orientations of the clean image.
        compressed = jpeg(clean[..., None], 20)[..., 0]
        lq = np.round(sample["lq"][0].numpy() * 255).astype(np.uint8)
        found = False
        for k in range(4):
            for flip in (False, True):
                g = np.rot90(gt, k)
                q = np.rot90(lq, k)
                if flip:
                    g, q = g[:, ::-1], q[:, ::-1]
                hit = cv2.matchTemplate(clean, np.ascontiguousarray(g), cv2.TM_SQDIFF)
                y, x = np.unravel_index(hit.argmin(), hit.shape)
                if np.array_equal(clean[y : y + 48, x : x + 48], g):  # (FFT matching is not exact)
                    assert np.array_equal(compressed[y : y + 48, x : x + 48], q), seed
                    found = True
        assert found, seed


def test_degradation_options_are_checked(tmp_path):
    base = """
name: t
scale: 1
network_g: {type: SwinIR, upscale: 1, embed_dim: 12, depths: [1], num_heads: [2], window_size: 4,
            upsampler: ''}
datasets:
  train: {name: x, type: DegradedHRDataset, dataroot_gt: some/where, gt_size: 32, DEGRADE}
train: {optim_g: {type: Adam, lr: 1e-3}, total_iter: 2, pixel_opt: {type: L1Loss}}
"""
    for degrade, problem in [
        ("noise_sigma: 300", "datasets.train.noise_sigma: noise sigma 300 is out of range"),
        ("noise_sigma: [50, 10]", "a range is [low, high]"),
        ("jpeg_quality: [0, 50]", "datasets.train.jpeg_quality: JPEG quality 0 is out of range"),
        ("noise_sigma: 10, noise_clip_prob: 2", "noise_clip_prob: a probability is between 0 and 1"),
        ("gt_size: 32", "DegradedHRDataset needs noise_sigma and/or jpeg_quality"),
    ]:
        path = tmp_path / "opt.yml"
        path.write_text(base.replace("gt_size: 32, DEGRADE", f"gt_size: 32, {degrade}"))
        with pytest.raises(OptionsError, match=problem.replace("[", r"\[").replace("]", r"\]")):
            load_train_options(path)
    path.write_text(base.replace("DEGRADE", "noise_sigma: [0, 50]"))
    assert load_train_options(path).datasets["train"].noise_sigma == [0, 50]
    with pytest.raises(DatasetError, match="scale-1"):
        DegradedHRDataset(
            DatasetOptions(
                name="t", type="DegradedHRDataset", gt_size=32, noise_sigma=5, dataroot_gt=str(tmp_path)
            ),
            2,
            "test",
        )


def test_restoration_training_runs_validates_and_records_its_settings(tmp_path, shared_dir):
    train = shared_dir / "data" / "train" / "T91"
    val = shared_dir / "data" / "restoration" / "Classic5"
    text = f"""
name: restore
scale: 1
num_gpu: 0
manual_seed: 3
datasets:
  train: {{name: t91, type: DegradedHRDataset, dataroot_gt: {train}, gt_size: 32, jpeg_quality: [10, 90],
          noise_sigma: [0, 30], noise_clip_prob: 0.5, gray_prob: 0.3, use_hflip: true, use_rot: true,
          num_worker_per_gpu: 1, batch_size_per_gpu: 2}}
  val: {{name: Classic5, type: DegradedHRDataset, dataroot_gt: {val}, jpeg_quality: 10}}
network_g: {{type: SwinIR, upscale: 1, embed_dim: 12, depths: [2], num_heads: [2], window_size: 4,
            img_range: 255.0, upsampler: ''}}
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: !!float 1e-3}}
  total_iter: 6
  pixel_opt: {{type: CharbonnierLoss, eps: !!float 1e-9}}
val:
  val_freq: 6
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 0, test_y_channel: false}}
    psnrb: {{type: calculate_psnrb, crop_border: 0, test_y_channel: false}}
logger: {{print_freq: 2, save_checkpoint_freq: 6, use_tb_logger: false}}
"""
    opt = tmp_path / "restore.yml"
    opt.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "sr",
        "train",
        "-opt",
        str(opt),
        "--threads",
        "1",
        "--no-plot",
        "--force-yml",
        f"path:experiments_root={tmp_path / 'run'}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line.split(",") for line in (tmp_path / "run" / "val_log.csv").read_text().splitlines()]
    assert rows[0] == ["iter", "dataset", "metric", "value"]
    assert [r[:3] for r in rows[1:]] == [["6", "Classic5", "psnr"], ["6", "Classic5", "psnrb"]]
    assert all(5 < float(r[3]) < 60 for r in rows[1:])
    weights = tmp_path / "run" / "models" / "net_g_6.safetensors"
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        assert json.loads(f.metadata()["sr.settings"]) == {"img_range": 255.0, "scale": 1}
    net = sr.load_model(weights)  # window 4: the rule alone would say img_range 1.0
    assert net.scale == 1 and net.params["img_range"] == 255.0
