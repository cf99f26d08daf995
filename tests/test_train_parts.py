"""Training pieces against independent truth: torch's own schedulers and losses, MATLAB-exact bicubic for
on-the-fly LR patches, and the sampler's ordering guarantees."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sr.data.augment import augment
from sr.data.datasets import BicubicHRDataset, ImageNetPairedDataset, PairedImageDataset
from sr.data.imresize import imresize
from sr.data.sampler import TrainBatchSampler
from sr.evaluate import DatasetError
from sr.options import DatasetOptions, LossOptions, SchedulerOptions
from sr.train.ema import EMA
from sr.train.losses import PixelLoss
from sr.train.schedule import lr_at


def _torch_lrs(make, iters, base=1e-3):
    """The lr torch's scheduler gives each 1-based iteration when stepped once per iteration from the 2nd on
    (BasicSR's loop)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = make(opt)
    lrs = []
    for it in range(1, iters + 1):
        if it > 1:
            opt.step()
            sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_multistep_matches_torch():
    opt = SchedulerOptions(type="MultiStepLR", milestones=[5, 9, 12], gamma=0.5)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [5, 9, 12], 0.5), 20)
    assert [lr_at(i, 1e-3, opt) for i in range(1, 21)] == pytest.approx(expected, rel=1e-12)


def test_cosine_matches_torch():
    opt = SchedulerOptions(type="CosineAnnealingRestartLR", periods=[30], restart_weights=[1.0], eta_min=1e-6)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 30, eta_min=1e-6), 30)
    assert [lr_at(i, 1e-3, opt) for i in range(1, 31)] == pytest.approx(expected, rel=1e-9)


def test_cosine_restart_and_warmup():
    opt = SchedulerOptions(type="CosineAnnealingRestartLR", periods=[10, 10], restart_weights=[1.0, 0.5])
    assert lr_at(11, 1.0, opt) == pytest.approx(0.0)  # end of the first period
    assert lr_at(12, 1.0, opt) == pytest.approx(0.5 * 0.5 * (1 + np.cos(np.pi * 1 / 10)))
    assert lr_at(3, 1.0, opt, warmup_iter=10) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kind", "reference"),
    [
        ("L1Loss", lambda p, t: torch.nn.functional.l1_loss(p, t)),
        ("MSELoss", lambda p, t: torch.nn.functional.mse_loss(p, t)),
        ("CharbonnierLoss", lambda p, t: torch.sqrt((p - t) ** 2 + 1e-12).mean()),
    ],
)
def test_pixel_losses(kind, reference):
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    loss = PixelLoss(LossOptions(type=kind, loss_weight=2.0))
    assert loss(p, t).item() == pytest.approx(2 * reference(p, t).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown pixel loss"):
        PixelLoss(LossOptions(type="L3Loss"))


def test_ema_update():
    net = torch.nn.Linear(2, 2)
    ema = EMA(net, 0.9)
    before = ema.model.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * net.weight, rtol=0, atol=1e-7)


def test_sampler_ranks_split_and_resume_skips():
    full = TrainBatchSampler(10, 2, seed=3, enlarge_ratio=2)
    full.start(epoch=1)
    batches = list(full)
    assert len(batches) == len(full) == 10
    assert sorted(i for b in batches for i, _ in b) == sorted(list(range(10)) * 2)
    full.start(epoch=1, skip_batches=4)
    assert list(full) == batches[4:]
    ranks = []
    for rank in range(2):
        s = TrainBatchSampler(10, 2, seed=3, enlarge_ratio=2, rank=rank, world_size=2)
        s.start(epoch=1)
        ranks.append([key for b in s for key in b])
    assert sorted(ranks[0] + ranks[1]) == sorted(key for b in batches for key in b)
    other = TrainBatchSampler(10, 2, seed=3, enlarge_ratio=2)
    other.start(epoch=2)
    assert list(other) != batches
    with pytest.raises(ValueError, match="do not fill one batch"):
        TrainBatchSampler(3, 4, seed=0)


def test_augment_is_one_transform_for_all():
    a = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    rng = np.random.default_rng(0)
    for _ in range(8):
        x, y = augment([a, a.copy()], rng, hflip=True, rotation=True)
        assert np.array_equal(x, y)


def _smoke_opt(shared_dir, **kw):
    smoke = shared_dir / "data" / "DIV2K_smoke"
    base = dict(
        name="smoke",
        dataroot_gt=str(smoke / "HR"),
        dataroot_lq=str(smoke / "LR_bicubic" / "X4"),
        gt_size=64,
        use_hflip=True,
        use_rot=True,
    )
    return DatasetOptions(**(base | kw))


def test_bicubic_dataset_makes_matlab_lr(shared_dir):
    ds = BicubicHRDataset(_smoke_opt(shared_dir, use_hflip=False, use_rot=False), 4, "test")
    item = ds[(0, 123)]
    assert item["gt"].shape == (3, 64, 64) and item["lq"].shape == (3, 16, 16)
    gt_u8 = np.round(item["gt"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    expected = imresize(gt_u8, 1 / 4) / 255
    np.testing.assert_allclose(item["lq"].numpy().transpose(1, 2, 0), expected, atol=1e-6)
    again = ds[(0, 123)]
    assert torch.equal(again["lq"], item["lq"]), "a sample is a function of its seed"


def test_imagenet_dataset_lr_is_bicubic_of_the_whole_image(shared_dir):
    """HAT's ImageNetPairedDataset downscales the whole image, then crops: its LR patch is the same patch of
    the shipped MATLAB-made LR file, up to MATLAB's rounding to uint8."""
    smoke = shared_dir / "data" / "DIV2K_smoke"
    ds = ImageNetPairedDataset(_smoke_opt(shared_dir, use_hflip=False, use_rot=False), 4, "test")
    item = ds[(1, 31)]
    rng = np.random.default_rng(31)  # paired_random_crop draws the LR top, then left, from the item's seed
    name = ds.files[1].name
    hr = np.asarray(Image.open(smoke / "HR" / name).convert("RGB"), dtype=np.float64) / 255
    lr = np.asarray(Image.open(smoke / "LR_bicubic" / "X4" / name).convert("RGB"), dtype=np.float64) / 255
    top, left = int(rng.integers(0, lr.shape[0] - 16 + 1)), int(rng.integers(0, lr.shape[1] - 16 + 1))
    gt, lq = (item[k].numpy().transpose(1, 2, 0) for k in ("gt", "lq"))
    np.testing.assert_allclose(gt, hr[top * 4 : top * 4 + 64, left * 4 : left * 4 + 64], atol=1e-6)
    diff = np.abs(lq - lr[top : top + 16, left : left + 16])
    assert diff.max() <= 1.01 / 255 and diff.mean() < 0.5 / 255


def test_imagenet_dataset_stretches_small_images(tmp_path):
    """Where BicubicHRDataset leaves a small image out, ImageNetPairedDataset stretches it to the patch."""
    rng = np.random.default_rng(0)
    small = (rng.random((37, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(small).save(tmp_path / "small.png")
    opt = DatasetOptions(name="small", dataroot_gt=str(tmp_path), gt_size=64)
    with pytest.raises(DatasetError, match="no image is at least the 64px patch"):
        BicubicHRDataset(opt, 4, "test")
    item = ImageNetPairedDataset(opt, 4, "test")[(0, 1)]
    assert item["gt"].shape == (3, 64, 64) and item["lq"].shape == (3, 16, 16)
    cropped = np.ascontiguousarray(small[:36, :48].astype(np.float32) / 255)  # a multiple of the scale
    stretched = cv2.resize(cropped, (64, 64), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(item["gt"].numpy().transpose(1, 2, 0), stretched, atol=1e-6)


def test_paired_dataset_aligns_patches(shared_dir):
    ds = PairedImageDataset(_smoke_opt(shared_dir), 4, "test")
    item = ds[(1, 7)]
    gt_u8 = np.round(item["gt"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
    lq = item["lq"].numpy().transpose(1, 2, 0)
    # The shipped LR is MATLAB bicubic of the whole image: inside the patch it matches to within rounding.
    inner = (imresize(gt_u8, 1 / 4) / 255)[2:-2, 2:-2]
    assert np.abs(inner - lq[2:-2, 2:-2]).mean() < 2 / 255


def test_small_images_left_out_and_named(shared_dir, tmp_path):
    opt = _smoke_opt(shared_dir, gt_size=4000)
    with pytest.raises(DatasetError, match="no image is at least the 4000px patch"):
        BicubicHRDataset(opt, 4, "test")
    with pytest.raises(DatasetError, match="not a multiple of the scale"):
        BicubicHRDataset(_smoke_opt(shared_dir, gt_size=66), 4, "test")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="bad.png: not a readable image"):
        BicubicHRDataset(_smoke_opt(shared_dir, dataroot_gt=str(tmp_path)), 4, "test")
