"""The training loop end to end: exact resume after a kill, 2-process DDP, logs, curves and validation."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sr.checkpoint import read_state_dict

ROOT = Path(__file__).resolve().parents[1]


def _options(tmp_path: Path, shared_dir: Path, *, total=30, save=10, nf=32, batch=4, gt=128, val=0) -> Path:
    smoke = shared_dir / "data" / "DIV2K_smoke"
    text = f"""
name: loop
scale: 4
num_gpu: 0
manual_seed: 5
datasets:
  train:
    name: smoke
    type: BicubicHRDataset
    dataroot_gt: {smoke / "HR"}
    gt_size: {gt}
    use_hflip: true
    use_rot: true
    num_worker_per_gpu: 1
    batch_size_per_gpu: {batch}
    dataset_enlarge_ratio: 6
  val:
    name: smoke
    type: PairedImageDataset
    dataroot_gt: {smoke / "HR"}
    dataroot_lq: {smoke / "LR_bicubic" / "X4"}
network_g: {{type: PAN, nf: {nf}, unf: 8, nb: 3, scale: 4}}
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: !!float 1e-3, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [12, 20], gamma: 0.5}}
  total_iter: {total}
  warmup_iter: 3
  grad_clip: 1.0
  pixel_opt: {{type: L1Loss}}
val:
  val_freq: {val}
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 4, test_y_channel: true}}
logger: {{print_freq: 5, save_checkpoint_freq: {save}, use_tb_logger: true}}
"""
    path = tmp_path / "loop.yml"
    path.write_text(text)
    return path


def _train(opt: Path, root: Path, *extra: str, wait=True):
    cmd = [
        sys.executable,
        "-m",
        "sr",
        "train",
        "-opt",
        str(opt),
        "--threads",
        os.environ.get("SR_TEST_THREADS", "1"),
        "--force-yml",
        f"path:experiments_root={root}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def _losses(root: Path) -> dict[int, str]:
    with (root / "train_log.csv").open() as handle:
        return {int(r["iter"]): r["loss"] for r in csv.DictReader(handle)}


def test_resume_after_kill_repeats_the_uninterrupted_run(tmp_path, shared_dir):
    opt = _options(tmp_path, shared_dir)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = _train(opt, whole, "--no-plot")
    assert done.returncode == 0, done.stderr

    proc = _train(opt, broken, "--no-plot", wait=False)
    deadline = time.time() + 300
    while not (broken / "training_states" / "10.state").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "models" / "net_g_30.safetensors").exists(), "killed too late to test resuming"
    resumed = _train(opt, broken, "--auto-resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at iteration" in resumed.stdout

    for key in ("params", "params_ema"):
        a = read_state_dict(whole / "models" / "net_g_30.safetensors", key)
        b = read_state_dict(broken / "models" / "net_g_30.safetensors", key)
        assert a.keys() == b.keys()
        for name in a:
            assert torch.equal(a[name], b[name]), f"{key}.{name} differs after resuming"
    assert _losses(broken) == _losses(whole), "the loss curve differs after resuming"
    assert (broken / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((broken / "tb_logger").glob("events.out.tfevents.*"))
    assert not list(broken.rglob("*.tmp")), "no temporary files left behind"


def test_validation_logged(tmp_path, shared_dir):
    opt = _options(tmp_path, shared_dir, total=4, save=4, nf=8, gt=64, val=2)
    run = _train(opt, tmp_path / "v", "--no-plot")
    assert run.returncode == 0, run.stderr
    with (tmp_path / "v" / "val_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["iter"], r["dataset"], r["metric"]) for r in rows] == [
        ("2", "smoke", "psnr"),
        ("4", "smoke", "psnr"),
    ]
    assert 15 < float(rows[-1]["value"]) < 40


def test_two_process_ddp_ranks_agree_and_match_one_process(tmp_path, shared_dir):
    opt = _options(tmp_path, shared_dir, total=6, save=6, nf=8, gt=64, batch=2)
    out = tmp_path / "ddp"
    out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(ROOT / "tests" / "helpers" / "ddp_train.py"),
        str(opt),
        str(out),
        f"path:experiments_root={out}/run",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"ranks disagree on {name}"
    # Two ranks of batch 2 see the same samples per step as one process of batch 4, and DDP averages the
    # gradients, so the result equals single-process training up to float summation order.
    single = _train(
        opt, tmp_path / "single", "--no-plot", "--force-yml", "datasets:train:batch_size_per_gpu=4"
    )
    assert single.returncode == 0, single.stderr
    alone = read_state_dict(tmp_path / "single" / "models" / "net_g_6.safetensors", "params")
    for name in rank0:
        torch.testing.assert_close(rank0[name], alone[name], rtol=0, atol=2e-5)
    saved = read_state_dict(out / "run" / "models" / "net_g_6.safetensors", "params")
    assert all(torch.equal(saved[n], rank0[n]) for n in rank0), "rank 0 checkpoints its own weights"


OFFICIAL_STYLE = [
    "SwinIR/train_SwinIR_SRx4_scratch.yml",
    "HAT/train_HAT-S_SRx4_finetune_from_SRx2.yml",
    "HAT/train_HAT_SRx2_ImageNet_from_scratch.yml",
    "SRFormer/train_SRFormer_light_SRx4_scratch.yml",
    "DAT/train_DAT_light_x4.yml",
    "CAMixerSR/train_CAMixerSR_x4.yml",
    "CFSR/train_CFSR_x4.yml",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFICIAL_STYLE)
def test_paper_options_train_with_only_data_paths_changed(name, tmp_path, shared_dir):
    """Option files with the official settings and keys (upscale, img_size, model_type, HAT's
    ImageNetPairedDataset ...) train one iteration at their own batch and patch size once pointed at data."""
    smoke = shared_dir / "data" / "DIV2K_smoke"
    run = _train(
        ROOT / "options" / "train" / name,
        tmp_path / "run",
        "--no-plot",
        "--force-yml",
        f"datasets:train:dataroot_gt={smoke / 'HR'}",
        f"datasets:train:dataroot_lq={smoke / 'LR_bicubic/X4'}",
        "datasets:train:filename_tmpl='{}'",
        "datasets:train:dataset_enlarge_ratio=100",
        "path:pretrain_network_g=~",
        "train:total_iter=1",
        "val:val_freq=~",
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "models" / "net_g_1.safetensors").is_file()
