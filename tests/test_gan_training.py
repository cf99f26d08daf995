"""GAN and real-world training: the GAN losses and the perceptual loss against closed forms, the training-pair
pool, the VGG file's download and hash check (a local HTTP server), option errors, exact resumption of a GAN
run after a kill, and Real-ESRGAN's and HAT's real-world option files training with only paths changed."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sr.checkpoint import read_state_dict
from sr.options import GANLossOptions, OptionsError, PerceptualLossOptions, load_train_options
from sr.train.losses import GANLoss, PerceptualLoss, gram_matrix
from sr.train.pool import PairPool
from sr.train.vgg_weights import VGGWeightsError, fetch, vgg_state_dict

ROOT = Path(__file__).resolve().parents[1]
# torchvision's vgg19 `features` numbering: the 16 convolutions' positions and channel counts
VGG19_CONVS = dict(
    zip(
        (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34),
        [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
        + [(256, 256)] * 3
        + [(256, 512)]
        + [(512, 512)] * 7,
        strict=True,
    )
)


def synthetic_vgg19(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under torchvision's vgg19 key names (He-initialised so features stay finite)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (cin, cout) in VGG19_CONVS.items():
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2 / (9 * cin))
        sd[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.01
    sd["classifier.0.weight"] = torch.zeros(8, 8)  # present in the real file, unused by the loss
    return sd


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "wgan", "wgan_softplus", "hinge"])
def test_gan_loss_closed_forms(kind):
    pred = torch.tensor([[-1.5, 0.2], [0.7, 2.0]])
    loss = GANLoss(GANLossOptions(gan_type=kind, real_label_val=0.9, fake_label_val=0.1, loss_weight=0.25))
    sig = 1 / (1 + np.exp(-pred.numpy().astype(np.float64)))
    x = pred.numpy().astype(np.float64)
    expected = {
        "vanilla": (
            -np.mean(0.9 * np.log(sig) + 0.1 * np.log(1 - sig)),
            -np.mean(0.1 * np.log(sig) + 0.9 * np.log(1 - sig)),
        ),
        "lsgan": (np.mean((x - 0.9) ** 2), np.mean((x - 0.1) ** 2)),
        "wgan": (-x.mean(), x.mean()),
        "wgan_softplus": (np.mean(np.log1p(np.exp(-x))), np.mean(np.log1p(np.exp(x)))),
        "hinge": (np.mean(np.maximum(0, 1 - x)), np.mean(np.maximum(0, 1 + x))),
    }[kind]
    assert loss(pred, True, discriminator=True).item() == pytest.approx(expected[0], rel=1e-6)
    assert loss(pred, False, discriminator=True).item() == pytest.approx(expected[1], rel=1e-6)
    generator = -x.mean() if kind == "hinge" else expected[0]  # the generator's hinge term is -mean
    assert loss(pred, True, discriminator=False).item() == pytest.approx(0.25 * generator, rel=1e-6)
    with pytest.raises(ValueError, match="gan_type"):
        GANLoss(GANLossOptions(gan_type="relativistic"))


def test_perceptual_and_style_losses_weigh_vgg_feature_distances():
    torch.manual_seed(0)
    weights = {"conv1_2": 0.1, "relu2_1": 0.5, "conv3_4": 1.0}
    x, gt = torch.rand(2, 3, 24, 24, requires_grad=True), torch.rand(2, 3, 24, 24)
    for criterion in ("l1", "l2", "fro"):
        opt = PerceptualLossOptions(
            layer_weights=weights, perceptual_weight=2.0, style_weight=3.0, criterion=criterion
        )
        loss = PerceptualLoss(opt, synthetic_vgg19())
        percep, style = loss(x, gt)
        fx, fg = loss.vgg(x), loss.vgg(gt)
        dist = {
            "l1": lambda a, b: (a - b).abs().mean(),
            "l2": lambda a, b: ((a - b) ** 2).mean(),
            "fro": lambda a, b: ((a - b) ** 2).sum().sqrt(),
        }[criterion]
        assert percep.item() == pytest.approx(
            2.0 * sum(w * dist(fx[k], fg[k]).item() for k, w in weights.items()), rel=1e-5
        )
        assert style.item() == pytest.approx(
            3.0 * sum(w * dist(gram_matrix(fx[k]), gram_matrix(fg[k])).item() for k, w in weights.items()),
            rel=1e-5,
        )
    percep.backward()
    assert x.grad is not None and all(not p.requires_grad for p in loss.vgg.parameters())
    f = torch.arange(24.0).reshape(1, 2, 3, 4)
    flat = f.reshape(2, 12)
    torch.testing.assert_close(gram_matrix(f)[0], flat @ flat.T / 24)
    off = PerceptualLoss(
        PerceptualLossOptions(layer_weights={"conv1_1": 1.0}, perceptual_weight=0), synthetic_vgg19()
    )
    assert off(x, gt) == (None, None)


def test_pair_pool_mixes_pairs_and_keeps_them_together():
    """As Real-ESRGAN's pool: the first batches are trained on and kept; later each batch goes in and a
    random batch comes out, so nothing is lost and nothing appears twice beyond those first batches."""
    pool = PairPool(6, 2, seed=0)
    seen = []
    for step in range(10):
        batch = {"lq": torch.full((2, 1), float(2 * step)) + torch.tensor([[0.0], [1.0]])}
        batch["gt"] = batch["lq"] * 10
        out = pool.exchange(batch)
        assert torch.equal(out["gt"], out["lq"] * 10), "pairs stay together"
        if step < 3:
            assert out is batch  # filling: trained on as they come
        seen += out["lq"].flatten().tolist()
    left = pool.tensors["lq"].flatten().tolist()
    assert seen[:6] == list(range(6)) and sorted(seen[6:] + left) == list(range(20))
    assert seen[6:] != list(range(6, 20))  # mixed, not first-in first-out
    with pytest.raises(ValueError, match="multiple of the batch size"):
        PairPool(5, 2)


@pytest.fixture
def file_server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_vgg_weights_download_checks_the_hash_prefix_in_the_name(file_server, tmp_path):
    folder, base = file_server
    source = tmp_path / "vgg.pth"
    torch.save(synthetic_vgg19(), source)
    data = source.read_bytes()
    prefix = hashlib.sha256(data).hexdigest()[:8]
    (folder / f"vgg19-{prefix}.pth").write_bytes(data)
    (folder / "vgg19-00000000.pth").write_bytes(data)  # a name whose hash prefix the file does not have
    cache = tmp_path / "cache"
    sd = vgg_state_dict("vgg19", None, models_dir=cache, url=f"{base}/vgg19-{prefix}.pth")
    assert torch.equal(sd["features.34.weight"], synthetic_vgg19()["features.34.weight"])
    assert (cache / f"vgg19-{prefix}.pth").is_file()
    with pytest.raises(VGGWeightsError, match="does not start with 00000000"):
        fetch(f"{base}/vgg19-00000000.pth", cache)
    assert not list(cache.glob("vgg19-00000000*")), "a file failing its check is not kept"
    with pytest.raises(VGGWeightsError, match="404"):
        fetch(f"{base}/vgg19-12345678.pth", cache)
    with pytest.raises(VGGWeightsError, match="vgg_weights"):
        vgg_state_dict("vgg13", None, models_dir=cache)


def _hr_folder(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.random((12, 16, 3))
        big = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((80, 60), Image.BICUBIC))
        Image.fromarray(big).save(folder / f"{i}.png")
    return folder


def _gan_options(tmp_path: Path, *, total=6, save=3, extra="") -> Path:
    hr = _hr_folder(tmp_path / "hr")
    text = f"""
name: gan
model_type: RealESRGANModel
scale: 4
num_gpu: 0
manual_seed: 3
l1_gt_usm: true
percep_gt_usm: true
gan_gt_usm: false
gt_size: 32
queue_size: 4
resize_range: [0.5, 1.5]
datasets:
  train:
    name: hr
    type: RealESRGANDataset
    dataroot_gt: {hr}
    crop_pad_size: 48
    gt_size: 32
    use_hflip: true
    num_worker_per_gpu: 1
    batch_size_per_gpu: 2
    dataset_enlarge_ratio: 4
network_g: {{type: PAN, nf: 8, unf: 4, nb: 1, scale: 4}}
network_d: {{type: UNetDiscriminatorSN, num_in_ch: 3, num_feat: 4, skip_connection: true}}
train:
  ema_decay: 0.9
  optim_g: {{type: Adam, lr: !!float 1e-3, betas: [0.9, 0.99]}}
  optim_d: {{type: Adam, lr: !!float 1e-3, betas: [0.9, 0.99]}}
  scheduler: {{type: MultiStepLR, milestones: [4], gamma: 0.5}}
  total_iter: {total}
  pixel_opt: {{type: L1Loss}}
  perceptual_opt:
    layer_weights: {{conv1_2: 0.1, conv3_4: 1.0}}
    vgg_weights: {tmp_path / "vgg19.pth"}
  gan_opt: {{type: GANLoss, gan_type: vanilla, loss_weight: 0.1}}
  net_d_iters: 1
  net_d_init_iters: 1
logger: {{print_freq: 1, save_checkpoint_freq: {save}, use_tb_logger: false}}
{extra}
"""
    torch.save(synthetic_vgg19(), tmp_path / "vgg19.pth")
    path = tmp_path / "gan.yml"
    path.write_text(text)
    return path


def _train(opt: Path, root: Path, *extra: str, wait=True, env=None, threads=1):
    cmd = [
        sys.executable,
        "-m",
        "sr",
        "train",
        "-opt",
        str(opt),
        "--threads",
        str(threads),
        "--no-plot",
        "--force-yml",
        f"path:experiments_root={root}",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def _losses(root: Path) -> dict[int, str]:
    with (root / "train_log.csv").open() as handle:
        return {int(r["iter"]): r["loss"] for r in csv.DictReader(handle)}


def test_gan_training_resumes_bit_exactly_after_a_kill(tmp_path):
    """Generator, EMA, discriminator, both optimisers and the pair pool all come back: the resumed run's
    weights and loss curve equal the uninterrupted run's."""
    opt = _gan_options(tmp_path)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    done = _train(opt, whole)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = _train(opt, broken, wait=False)
    deadline = time.time() + 300
    while not (broken / "training_states" / "3.state").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its first checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (broken / "models" / "net_g_6.safetensors").exists(), "killed too late to test resuming"
    resumed = _train(opt, broken, "--auto-resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for key in ("params", "params_ema"):
        a = read_state_dict(whole / "models" / "net_g_6.safetensors", key)
        b = read_state_dict(broken / "models" / "net_g_6.safetensors", key)
        assert all(torch.equal(a[n], b[n]) for n in a), f"{key} differs after resuming"
    sa = torch.load(whole / "training_states" / "6.state", weights_only=True)
    sb = torch.load(broken / "training_states" / "6.state", weights_only=True)
    for name, value in sa["adversary"]["net_d"].items():
        assert torch.equal(value, sb["adversary"]["net_d"][name]), f"net_d.{name} differs after resuming"
    assert torch.equal(sa["pool"]["tensors"]["lq"], sb["pool"]["tensors"]["lq"])
    assert _losses(broken) == _losses(whole)
    assert "l_d_real" in (whole / "train.log").read_text()
    net_d = read_state_dict(whole / "models" / "net_d_6.safetensors")
    assert net_d.keys() == sa["adversary"]["net_d"].keys() and "conv1.weight_orig" in net_d
    # a later run starts its discriminator from that file (BasicSR's pretrain_network_d)
    again = _train(
        opt,
        tmp_path / "again",
        "--force-yml",
        f"path:pretrain_network_d={whole / 'models' / 'net_d_6.safetensors'}",
        "--force-yml",
        "train:total_iter=1",
    )
    assert again.returncode == 0, again.stderr[-2000:]


@pytest.mark.parametrize(
    "extra, message",
    [
        ("resize_prob: [0.5, 0.5]", "resize_prob: expected three"),
        ("jpeg_range: [30, 120]", "jpeg_range: expected"),
        ("gray_noise_prob: 1.5", "gray_noise_prob: a probability"),
    ],
)
def test_bad_degradation_options_are_named(tmp_path, extra, message):
    opt = _gan_options(tmp_path, extra=extra)
    with pytest.raises(OptionsError, match=message):
        load_train_options(opt)


def test_degradation_keys_need_a_real_world_model_type(tmp_path):
    opt = _gan_options(tmp_path)
    run = _train(opt, tmp_path / "run", "--force-yml", "model_type=SRModel")
    assert run.returncode != 0 and "real-world model types only" in run.stderr
    opt.write_text(
        opt.read_text()
        .replace("kernel_list", "x")
        .replace("crop_pad_size: 48", "crop_pad_size: 48\n    kernel_list: [box]")
    )
    with pytest.raises(OptionsError, match="unknown kernel type 'box'"):
        load_train_options(opt)


REAL_WORLD_FILES = [
    "RRDBNet/train_realesrnet_x4plus.yml",
    "RRDBNet/train_realesrgan_x4plus.yml",
    "HAT/train_Real_HAT_SRx4_mse_model.yml",
    "HAT/train_Real_HAT_GAN_SRx4_finetune_from_mse_model.yml",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_WORLD_FILES)
def test_real_world_option_files_train_with_only_paths_changed(name, tmp_path_factory, shared_dir):
    """The official real-world recipes (RRDBNet or HAT, U-Net SN discriminator, VGG19 perceptual loss, the
    second-order degradation and the 180-pair pool) train one iteration at their own batch and patch size
    once pointed at data; the VGG file is found in the model cache as a downloaded one would be."""
    cache = tmp_path_factory.getbasetemp() / "vgg_cache"
    if not (cache / "vgg19-dcbb9e9d.pth").is_file():
        cache.mkdir(exist_ok=True)
        torch.save(synthetic_vgg19(), cache / "vgg19-dcbb9e9d.pth")
    tmp = tmp_path_factory.mktemp("run")
    run = _train(
        ROOT / "options" / "train" / name,
        tmp / "run",
        "--force-yml",
        f"datasets:train:dataroot_gt={shared_dir / 'data' / 'DIV2K_smoke' / 'HR'}",
        "datasets:train:meta_info=~",
        "datasets:train:meta_info_file=~",
        "datasets:train:num_worker_per_gpu=1",
        "datasets:train:dataset_enlarge_ratio=100",
        "path:pretrain_network_g=~",
        "train:total_iter=1",
        env={"SR_MODELS_DIR": str(cache)},
        threads=2,  # full-size networks: RRDBNet 23 blocks at batch 12, HAT-M at batch 4
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp / "run" / "models" / "net_g_1.safetensors").is_file()
    saved = torch.load(tmp / "run" / "training_states" / "1.state", weights_only=True)
    assert (
        saved["pool"]["filled"]
        == load_train_options(ROOT / "options" / "train" / name).datasets["train"].batch_size_per_gpu
    )
    assert ("adversary" in saved) == ("GAN" in name or "realesrgan_" in name)


def test_usm_target_is_sharper_than_the_plain_one(tmp_path):
    """RealESRNet with gt_usm trains towards the unsharp-masked HR: its high frequencies are stronger."""
    from sr.data.datasets import build_dataset
    from sr.options import DatasetOptions, SecondOrderOptions

    hr = _hr_folder(tmp_path / "hr")
    opt = DatasetOptions(
        name="t", type="RealESRGANDataset", dataroot_gt=str(hr), gt_size=32, crop_pad_size=48
    )
    ds = build_dataset(
        opt, 4, "t", degradation=SecondOrderOptions(gt_size=32), usm_input=True, usm_target=True
    )
    sample = ds[(0, 1)]
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)

    def energy(x):
        return F.conv2d(x[None], lap, groups=3).abs().mean().item()

    assert energy(sample["gt_usm"]) > 1.05 * energy(sample["gt"])


def test_srgan_model_trains_on_ordinary_pairs(tmp_path, shared_dir):
    """BasicSR's SRGANModel: the same adversarial step on bicubic pairs, with the VGG-style discriminator."""
    smoke = shared_dir / "data" / "DIV2K_smoke" / "HR"
    torch.save(synthetic_vgg19(), tmp_path / "vgg19.pth")
    opt = tmp_path / "srgan.yml"
    opt.write_text(f"""
name: srgan
model_type: SRGANModel
scale: 4
num_gpu: 0
manual_seed: 1
datasets:
  train: {{name: smoke, type: BicubicHRDataset, dataroot_gt: {smoke}, gt_size: 128, num_worker_per_gpu: 0,
           batch_size_per_gpu: 2, dataset_enlarge_ratio: 4}}
network_g: {{type: PAN, nf: 8, unf: 4, nb: 1, scale: 4}}
network_d: {{type: VGGStyleDiscriminator128, num_in_ch: 3, num_feat: 4}}
train:
  optim_g: {{type: Adam, lr: !!float 1e-4}}
  optim_d: {{type: Adam, lr: !!float 1e-4}}
  total_iter: 2
  perceptual_opt: {{layer_weights: {{conv5_4: 1.0}}, vgg_weights: {tmp_path / "vgg19.pth"}}}
  gan_opt: {{type: GANLoss, gan_type: hinge, loss_weight: 0.005}}
logger: {{print_freq: 1, save_checkpoint_freq: 2, use_tb_logger: false}}
""")
    run = _train(opt, tmp_path / "run")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "models" / "net_d_2.safetensors").is_file()
    saved = torch.load(tmp_path / "run" / "training_states" / "2.state", weights_only=True)
    assert "pool" not in saved and saved["adversary"]["optimizer_d"]["state"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "l_g_percep" in log and "l_g_gan" in log and "l_g_pix" not in log  # no pixel_opt: GAN + VGG only
