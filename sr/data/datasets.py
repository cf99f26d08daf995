"""Training datasets: paired HR/LR folders (BasicSR's PairedImageDataset) and HR-only folders degraded on the
fly: MATLAB-exact bicubic for super-resolution (BicubicHRDataset, and HAT's ImageNetPairedDataset), noise and
JPEG for restoration (DegradedHRDataset), Real-ESRGAN's second-order degradation for real-world models
(RealESRGANDataset).

Items are addressed by (index, seed): the seed drives the crop and augmentation, so a sample does not depend
on which worker process makes it. Every file is checked when the dataset is built, so a missing folder or an
unreadable image is reported before training starts; images smaller than the patch are left out and listed
in `skipped` (T91 mixes sizes), and a set left with none is an error.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image as PILImage
from torch.utils.data import Dataset

from sr.data import second_order
from sr.data.augment import augment, paired_random_crop, random_crop
from sr.data.degradations import add_noise, jpeg, to_gray, to_luma, usm_sharpen
from sr.data.imresize import imresize
from sr.evaluate import DatasetError, as_rgb, find_pairs
from sr.imageio import IMAGE_EXTENSIONS, ImageError, read_image, to_uint8
from sr.options import DatasetOptions, SecondOrderOptions

Sample = dict[str, torch.Tensor | str]


def _folder(path: str, what: str, where: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{where}: {what} folder {folder} not found")
    return folder


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, or a DatasetError naming the file."""
    try:
        with PILImage.open(path) as image:
            return image.size
    except (OSError, ValueError, PILImage.DecompressionBombError) as error:
        raise DatasetError(f"{path}: not a readable image ({error})") from None


def _rgb(path: Path) -> np.ndarray:
    """An image as H x W x 3 float32 in [0, 1]: gray replicated, alpha dropped, any bit depth."""
    try:
        return as_rgb(read_image(path).pixels)
    except ImageError as error:
        raise DatasetError(str(error)) from None


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))


def _meta_names(meta_info_file: str, where: str) -> list[str]:
    try:
        lines = Path(meta_info_file).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"{where}: meta_info_file {meta_info_file}: {error.strerror}") from None
    return [line.split(" ")[0] for line in lines if line.strip()]


class PatchDataset(Dataset):
    """Shared part: a list of files, a patch size, augmentation flags, and (index, seed) addressing."""

    def __init__(self, opt: DatasetOptions, scale: int, where: str) -> None:
        if opt.gt_size is None:
            raise DatasetError(f"{where}: gt_size (the HR patch size) is required for training")
        if opt.gt_size % scale:
            raise DatasetError(f"{where}: gt_size {opt.gt_size} is not a multiple of the scale {scale}")
        self.name, self.scale, self.gt_size = opt.name, scale, opt.gt_size
        self.hflip = opt.use_hflip if opt.use_flip is None else opt.use_flip
        self.rotation = opt.use_rot
        self.skipped: list[Path] = []

    def _check_not_empty(self, where: str) -> None:
        if len(self) == 0:
            raise DatasetError(f"{where}: no image is at least the {self.gt_size}px patch (gt_size)")

    def _finish(self, gt: np.ndarray, lq: np.ndarray, rng: np.random.Generator, name: str) -> Sample:
        gt, lq = augment([gt, lq], rng, hflip=self.hflip, rotation=self.rotation)
        return {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "name": name}


class PairedImageDataset(PatchDataset):
    """HR/LR pairs from `dataroot_gt` / `dataroot_lq` (matched with `filename_tmpl`, or a meta_info file)."""

    def __init__(self, opt: DatasetOptions, scale: int, where: str) -> None:
        super().__init__(opt, scale, where)
        if not isinstance(opt.dataroot_gt, str) or not opt.dataroot_lq:
            raise DatasetError(f"{where}: PairedImageDataset needs one dataroot_gt folder and dataroot_lq")
        gt_dir = _folder(opt.dataroot_gt, "dataroot_gt", where)
        lq_dir = _folder(opt.dataroot_lq, "dataroot_lq", where)
        if opt.meta_info_file:
            self.pairs = []
            for name in _meta_names(opt.meta_info_file, where):
                stem, ext = Path(name).stem, Path(name).suffix
                self.pairs.append((gt_dir / name, lq_dir / f"{opt.filename_tmpl.format(stem)}{ext}"))
        else:
            self.pairs = [(hr, lr) for _, hr, lr in find_pairs(gt_dir, lq_dir, opt.filename_tmpl)]
        lq_size, kept = self.gt_size // scale, []
        for gt_path, lq_path in self.pairs:
            (gw, gh), (lw, lh) = _size(gt_path), _size(lq_path)
            if gw < lw * scale or gh < lh * scale:
                raise DatasetError(f"{gt_path}: HR {gw}x{gh} is smaller than x{scale} of its LR ({lw}x{lh})")
            if lw < lq_size or lh < lq_size:
                self.skipped.append(gt_path)
            else:
                kept.append((gt_path, lq_path))
        self.pairs = kept
        self._check_not_empty(where)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        gt_path, lq_path = self.pairs[index]
        rng = np.random.default_rng(seed)
        gt, lq = paired_random_crop(_rgb(gt_path), _rgb(lq_path), self.gt_size, self.scale, rng, str(gt_path))
        return self._finish(gt, lq, rng, gt_path.stem)


class HRFolderDataset(PatchDataset):
    """HR images from one or more `dataroot_gt` folders (or a meta_info list); subclasses degrade them."""

    keep_small = False  # images smaller than the patch are left out (listed in `skipped`)

    def __init__(self, opt: DatasetOptions, scale: int, where: str) -> None:
        super().__init__(opt, scale, where)
        roots = [opt.dataroot_gt] if isinstance(opt.dataroot_gt, str) else opt.dataroot_gt
        if not roots:
            raise DatasetError(f"{where}: {type(self).__name__} needs dataroot_gt (a folder or a list)")
        self.files: list[Path] = []
        for root in roots:
            folder = _folder(root, "dataroot_gt", where)
            meta_info = opt.meta_info_file or opt.meta_info
            if meta_info:
                found = [folder / name for name in _meta_names(meta_info, where)]
            else:
                found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DatasetError(f"{where}: {folder} holds no images")
            self.files += found
        for path in self.files:
            if min(_size(path)) < self.gt_size and not self.keep_small:
                self.skipped.append(path)
        skipped = set(self.skipped)
        self.files = [p for p in self.files if p not in skipped]
        self._check_not_empty(where)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, index: int):
        path = self.files[index]
        try:
            return path, read_image(path)
        except ImageError as error:
            raise DatasetError(str(error)) from None


class BicubicHRDataset(HRFolderDataset):
    """HR images from one or more `dataroot_gt` folders; LR patches made by MATLAB bicubic downscaling.

    8-bit images are downscaled as uint8 (rounded after each pass, as MATLAB does, so patches match
    MATLAB-made LR files); deeper images in float.
    """

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        path, image = self._read(index)
        pixels = as_rgb(image.pixels)
        rng = np.random.default_rng(seed)
        patch = random_crop(to_uint8(pixels) if image.bit_depth == 8 else pixels, self.gt_size, rng)
        lq = imresize(patch, 1 / self.scale).astype(np.float32)
        gt = patch.astype(np.float32)
        if image.bit_depth == 8:
            gt, lq = gt / 255, lq / 255
        return self._finish(gt, lq, rng, path.stem)


class ImageNetPairedDataset(BicubicHRDataset):
    """HAT's ImageNet pre-training set (hat/data/imagenet_paired_dataset.py in XPixelGroup/HAT): HR-only.

    Each image is cropped to a multiple of the scale, stretched (bilinear, OpenCV) to at least the patch
    size instead of being left out, and downscaled whole by bicubic in float; the pair is then cropped and
    augmented together.
    """

    keep_small = True

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        path = self.files[index]
        gt = _rgb(path)
        h, w = gt.shape[:2]
        gt = np.ascontiguousarray(gt[: h - h % self.scale, : w - w % self.scale])
        h, w = max(gt.shape[0], self.gt_size), max(gt.shape[1], self.gt_size)
        if (h, w) != gt.shape[:2]:
            gt = cv2.resize(gt, (w, h), interpolation=cv2.INTER_LINEAR)
        lq = imresize(gt, 1 / self.scale).astype(np.float32)
        rng = np.random.default_rng(seed)
        gt, lq = paired_random_crop(gt, lq, self.gt_size, self.scale, rng, str(path))
        return self._finish(gt, lq, rng, path.stem)


MCU = 16  # JPEG's largest coding unit (8x8 blocks, 4:2:0 chroma over 16x16)


def _level(value: float | list[float] | None, rng: np.random.Generator, integer: bool = False):
    """A fixed setting, or one drawn uniformly from a [low, high] range (integers: both ends included)."""
    if not isinstance(value, list):
        return value
    low, high = value
    return int(rng.integers(low, high + 1)) if integer else float(rng.uniform(low, high))


class DegradedHRDataset(HRFolderDataset):
    """Restoration training pairs (scale 1): HR patches and the same patches degraded on the fly.

    `noise_sigma` (0..255 scale; a number, or [low, high] drawn uniformly per patch for blind models) adds
    white Gaussian noise, per channel for colour; with probability `noise_clip_prob` the noisy patch is
    then clipped and rounded to 8 bits, as a noisy photo is stored. `jpeg_quality` (a number, or [low,
    high] drawn per patch) compresses with OpenCV's JPEG codec, after the noise when both are given. The
    JPEG block grid is the whole image's (the patch is cut out of the compressed MCU-aligned region around
    it), so patches see every block offset, as crops of real JPEG files do. `color: gray` trains gray
    models on OpenCV's gray conversion, `color: y` on BT.601 luma (as SwinIR's gray JPEG models);
    `gray_prob` makes that share of a colour model's patches gray photos, degraded as gray and replicated
    to RGB.
    """

    def __init__(self, opt: DatasetOptions, scale: int, where: str) -> None:
        if scale != 1:
            raise DatasetError(f"{where}: DegradedHRDataset makes scale-1 (restoration) pairs, not x{scale}")
        super().__init__(opt, scale, where)
        self.sigma, self.clip_prob, self.quality = opt.noise_sigma, opt.noise_clip_prob, opt.jpeg_quality
        self.color, self.gray_prob = opt.color or "rgb", opt.gray_prob

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        path, image = self._read(index)
        clean = to_uint8(as_rgb(image.pixels))
        rng = np.random.default_rng(seed)
        widen = self.color == "rgb" and rng.random() < self.gray_prob
        if self.color == "gray" or widen:
            clean = to_gray(clean)
        elif self.color == "y":
            clean = to_luma(clean)
        size, (h, w) = self.gt_size, clean.shape[:2]
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        sigma = _level(self.sigma, rng)
        clip = bool(sigma) and rng.random() < self.clip_prob
        quality = _level(self.quality, rng, integer=True)
        # JPEG sees the patch inside the whole MCU-aligned region around it, so blocks (and 4:2:0 chroma)
        # fall where they would in the whole image; noise alone needs the patch only.
        y0, x0, y1, x1 = top, left, top + size, left + size
        if quality is not None:
            y0, x0 = y0 - y0 % MCU, x0 - x0 % MCU
            y1, x1 = min(h, -(-y1 // MCU) * MCU), min(w, -(-x1 // MCU) * MCU)
        region = clean[y0:y1, x0:x1]
        degraded = region.astype(np.float32) / 255
        if sigma:
            degraded = add_noise(degraded, rng.normal(0, sigma / 255, degraded.shape), quantize=clip)
        if quality is not None:
            degraded = jpeg(to_uint8(degraded), quality).astype(np.float32) / 255
        crop = (slice(top - y0, top - y0 + size), slice(left - x0, left - x0 + size))
        gt, lq = region[crop].astype(np.float32) / 255, degraded[crop]
        if widen:  # a gray photo through a colour model: the engine replicates it to RGB the same way
            gt, lq = np.repeat(gt, 3, axis=2), np.repeat(lq, 3, axis=2)
        return self._finish(gt, np.ascontiguousarray(lq), rng, path.stem)


class RealESRGANDataset(HRFolderDataset):
    """Real-world SR pairs: HR images degraded by Real-ESRGAN's second-order model (`sr.data.second_order`).

    As `RealESRGANDataset` + `RealESRGANModel.feed_data`: flip/rotate the HR image, crop it (or pad it,
    mirrored) to `crop_pad_size`, draw the three filters, degrade (from the unsharp-masked HR when
    `usm_input`), then crop an aligned `gt_size` patch pair. Items also carry `gt_usm`, the sharpened HR
    patch, when the model trains towards it (`gt_usm` / `l1_gt_usm` / ... keys). `bicubic_prob` (ours, 0 in
    Real-ESRGAN) makes that share of the LR patches by plain MATLAB bicubic, so a model also keeps what it
    knew of clean inputs.
    """

    keep_small = True  # padded to crop_pad_size, as Real-ESRGAN does

    def __init__(
        self,
        opt: DatasetOptions,
        scale: int,
        where: str,
        degradation: SecondOrderOptions,
        *,
        usm_input: bool,
        usm_target: bool,
    ) -> None:
        super().__init__(opt, scale, where)
        if degradation.gt_size > opt.crop_pad_size:
            raise DatasetError(
                f"{where}: gt_size {degradation.gt_size} exceeds crop_pad_size {opt.crop_pad_size}"
            )
        if degradation.gt_size % scale:
            raise DatasetError(
                f"{where}: gt_size {degradation.gt_size} is not a multiple of the scale {scale}"
            )
        self.degradation, self.crop_pad, self.bicubic_prob = degradation, opt.crop_pad_size, opt.bicubic_prob
        self.kernels = second_order.kernel_settings(opt)
        self.usm_input, self.usm_target = usm_input, usm_target

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        index, seed = key
        path, image = self._read(index)
        rng = np.random.default_rng(seed)
        (hr,) = augment([as_rgb(image.pixels)], rng, hflip=self.hflip, rotation=self.rotation)
        size, (h, w) = self.crop_pad, hr.shape[:2]
        if h < size or w < size:
            hr = cv2.copyMakeBorder(hr, 0, max(0, size - h), 0, max(0, size - w), cv2.BORDER_REFLECT_101)
        hr = np.ascontiguousarray(random_crop(hr, size, rng))
        kernels = second_order.draw_kernels(rng, self.kernels)
        sharp = usm_sharpen(hr) if self.usm_input or self.usm_target else None
        source = sharp if self.usm_input else hr
        if self.bicubic_prob and rng.uniform() < self.bicubic_prob:
            lq = imresize(to_uint8(source), 1 / self.scale).astype(np.float32) / 255
        else:
            lq = second_order.degrade(source, rng, self.degradation, kernels, self.scale)
        gt_size = self.degradation.gt_size
        stacked = hr if sharp is None else np.concatenate([hr, sharp], axis=2)
        stacked, lq = paired_random_crop(stacked, lq, gt_size, self.scale, rng, str(path))
        sample = {"lq": _to_tensor(lq), "gt": _to_tensor(stacked[..., :3]), "name": path.stem}
        if self.usm_target:
            sample["gt_usm"] = _to_tensor(stacked[..., 3:])
        return sample


DATASET_TYPES = {
    "PairedImageDataset": PairedImageDataset,
    "BicubicHRDataset": BicubicHRDataset,
    "DegradedHRDataset": DegradedHRDataset,
    "ImageNetPairedDataset": ImageNetPairedDataset,
    "RealESRGANDataset": RealESRGANDataset,
}


def build_dataset(opt: DatasetOptions, scale: int, where: str, **real_world) -> PatchDataset:
    """The training dataset an options entry describes; `where` names it in errors (file: key).

    `real_world` (degradation, usm_input, usm_target) goes to RealESRGANDataset: the model's settings.
    """
    cls = DATASET_TYPES.get(opt.type)
    if cls is None:
        raise DatasetError(
            f"{where}.type: unknown dataset type {opt.type!r} (known: {', '.join(DATASET_TYPES)})"
        )
    if cls is RealESRGANDataset:
        if not real_world:
            raise DatasetError(
                f"{where}.type: RealESRGANDataset is degraded by a real-world model type (model_type: "
                "RealESRNetModel, RealESRGANModel, RealHATMSEModel or RealHATGANModel)"
            )
        return cls(opt, scale, where, **real_world)
    return cls(opt, scale, where)
