"""Speed and output of our PAN, DRCT, CFSR, A2N, DLGSANet, Histoformer and HOGformer against the authors' own
modules, imported at run time from checkouts of the official repositories: same weights, same input, fp32 CPU.

Run from the repository root:
`python -m benchmarks.official_code --official-root DIR [--threads 1] [--repeat 5] [--only A2N CFSR ...]
[--size N] [--weights DIR]`. Median time over `--repeat` calls after one warm-up, all runs interleaved in one
process; max abs difference between the two outputs; peak memory is the rise of the resident set during one
forward (benchmarks/memory.py). Inputs: light networks at 128x128 (LR), full ones at 64x64 (DRCT, DLGSANet),
the scale-1 restoration networks at 128x128; `--size` sets one side for all. The input is image-like
(smooth seeded noise, `image_like`), and ours gets it in the engine's layout (NHWC where the family runs so).

DIR holds one checkout per repository, at the commit our ports follow:

    cd DIR
    git clone https://github.com/zhaohengyuan1/PAN && git -C PAN checkout 4d045d1
    git clone https://github.com/haoyuc/A2N && git -C A2N checkout 210b38c
    git clone https://github.com/Aitical/CFSR && git -C CFSR checkout ec9b237
    git clone https://github.com/NeonLeexiang/DLGSANet && git -C DLGSANet checkout 0974b9a
    git clone https://github.com/sunshangquan/Histoformer && git -C Histoformer checkout 1f045f0
    git clone https://github.com/Fire-friend/HOGformer && git -C HOGformer checkout be6fd81

A family whose checkout is absent is skipped with one line. DRCT's official module is spandrel's copy
(spandrel.architectures.DRCT, imported under the torchvision stub of tests/oracles). Each official file is
executed alone (importlib), without its framework: stand-in modules take the place of what it imports.
- `basicsr.utils.registry.ARCH_REGISTRY` (CFSR, DLGSANet): `register()` returns the class unchanged.
- A2N's `from model import common`: a `model` package holding the checkout's code/model/common.py.
- PAN's `models.archs.arch_util`: its `make_layer` (n blocks in an nn.Sequential), as the checkout has it.
- DLGSANet's `.arch_util` (`to_2tuple`, `trunc_normal_`) and `.dlgsanet_idynamicdwconv_util`, whose op is a
  CuPy CUDA kernel: its `IDynamicDWConv` is replaced by one with the official constructor and keys over
  our `kernels.dynamic_conv.dynamic_depthwise_conv`. DLGSANet's official code cannot run on CPU, so its
  rows time everything but that op (the same in both). The stand-in also gives the `F`
  (torch.nn.functional) that the official file uses without importing.
Weights: PAN x4, CFSR x4 and A2N x2 are the official files (`--weights`, default $SR_SHARED/weights or
../shared/weights); the others are seeded random weights, perturbed as the tests do. The official modules run
behind the official test path's wrapping where ours does it inside: A2N on 0..255, DRCT, Histoformer and
HOGformer reflect-padded to their multiple and cropped.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib.util
import io
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules.utils import _pair

import sr
from archs import dlgsanet, drct, histoformer, hogformer
from archs.blocks import reflect_pad_to
from archs.dlgsanet import DLGSANet
from archs.drct import DRCT
from archs.histoformer import Histoformer
from archs.hogformer import HOGformer
from archs.registry import Family
from benchmarks.archs import forward, median_ms
from benchmarks.memory import rss_peak_mib
from sr.allocator import keep_freed_memory
from tests.oracles.torchvision_stub import install as install_torchvision_stub

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SR_SHARED", ROOT.parent / "shared"))
DIFF_LIMIT = 1e-4


@dataclass
class Pair:
    """Our module and the official one holding the same weights; `size` is the input side (square)."""

    network: str
    preset: str
    size: int
    ours: nn.Module
    official: nn.Module
    weights: str
    note: str = ""


class Padded(nn.Module):
    """The official test scripts' wrapping: reflect-pad bottom and right to `multiple`, crop the output."""

    def __init__(self, model: nn.Module, multiple: int, scale: int = 1) -> None:
        super().__init__()
        self.model, self.multiple, self.scale = model, multiple, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.model(reflect_pad_to(x, self.multiple))[..., : h * self.scale, : w * self.scale]


class Range255(nn.Module):
    """EDSR-PyTorch's data range around a network trained on 0..255: [0, 1] in and out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * 255) / 255


class IDynamicDWConvStandIn(dlgsanet.IDynamicDWConv):
    """The official `IDynamicDWConv` (constructor, keys `conv1`, `conv2`) over our `dynamic_depthwise_conv`,
    in place of its CuPy CUDA kernel."""

    def __init__(self, channels: int, kernel_size: int, group_channels: int, bias: bool = True) -> None:
        assert bias, "the official blocks build IDynamicDWConv with bias=True"
        super().__init__(channels, kernel_size, group_channels)


def stand_in(name: str, **attributes: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def registry_stand_in() -> dict[str, types.ModuleType]:
    register = types.SimpleNamespace(register=lambda: lambda cls: cls)
    return {"basicsr.utils.registry": stand_in("basicsr.utils.registry", ARCH_REGISTRY=register)}


def load_official(
    path: Path, name: str, stand_ins: dict[str, types.ModuleType] | None = None
) -> types.ModuleType:
    """Execute the file `path` as module `name` (its package part resolves relative imports), with
    `stand_ins` in sys.modules only while it runs."""
    stand_ins = stand_ins or {}
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    saved = {key: sys.modules.get(key) for key in stand_ins}
    sys.modules.update(stand_ins)
    try:
        spec.loader.exec_module(module)
    finally:
        for key, previous in saved.items():
            if previous is None:
                del sys.modules[key]
            else:
                sys.modules[key] = previous
    return module


def random_model(build: Callable[[], nn.Module], std: float, small_only: bool = False) -> nn.Module:
    """A seeded build in eval mode, its parameters moved off their initial values by N(0, std²) noise; with
    `small_only` only those of at most 3 dimensions (norms, biases, temperatures), convolution kernels left at
    their init, as tests/test_dlgsanet.py does."""
    torch.manual_seed(0)
    model = build()
    with torch.no_grad():
        for p in model.parameters():
            if not small_only or p.dim() <= 3:
                p.add_(std * torch.randn_like(p))
    return model.eval()


def holding(official: nn.Module, state_dict: dict, family: Family) -> nn.Module:
    """`official` with `state_dict` loaded: only the family's ignored keys (buffers it rebuilds) may miss."""
    missing, unexpected = official.load_state_dict(state_dict, strict=False)
    if unexpected or not all(family.ignored_keys(key) for key in missing):
        raise RuntimeError(f"official module and ours differ: missing {missing}, unexpected {unexpected}")
    return official.eval()


def a2n_pairs(path: Path, weights: Path) -> list[Pair]:
    common = load_official(path.parent / "common.py", "model.common")
    package = stand_in("model", __path__=[], common=common)
    official = load_official(path, "model.aan", {"model": package, "model.common": common})
    file = weights / "A2N" / "aan_x2.pt"
    model = official.AAN(types.SimpleNamespace(scale=[2]))
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True), strict=True)
    ours = sr.load_model(file, scale=2).model
    return [Pair("A2N", "A2N x2", 128, ours, Range255(model.eval()), "official aan_x2.pt")]


def pan_pairs(path: Path, weights: Path) -> list[Pair]:
    def make_layer(block: Callable[[], nn.Module], n_layers: int) -> nn.Sequential:
        return nn.Sequential(*[block() for _ in range(n_layers)])

    arch_util = stand_in("models.archs.arch_util", make_layer=make_layer)
    archs_package = stand_in("models.archs", __path__=[], arch_util=arch_util)
    packages = {"models": stand_in("models", __path__=[], archs=archs_package), "models.archs": archs_package}
    official = load_official(path, "models.archs.PAN_arch", {**packages, arch_util.__name__: arch_util})
    file = weights / "PAN" / "PANx4_DF2K.pth"
    model = official.PAN(in_nc=3, out_nc=3, nf=40, unf=24, nb=16, scale=4)
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True), strict=True)
    ours = sr.load_model(file).model
    return [Pair("PAN", "PAN x4", 128, ours, model.eval(), "official PANx4_DF2K.pth")]


def cfsr_pairs(path: Path, weights: Path) -> list[Pair]:
    official = load_official(path, "basicsr.archs.cfsr_arch", registry_stand_in())
    file = weights / "CFSR" / "CFSR_x4.pth"
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per merged MLP
        model = official.CFSR(
            embed_dim=48, depths=(6, 6), dw_size=9, mlp_ratio=2, upscale=4, upsampler="pixelshuffledirect"
        )
    model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True)["params"], strict=True)
    ours = sr.load_model(file).model
    return [Pair("CFSR", "CFSR x4 (merged)", 128, ours, model.eval(), "official CFSR_x4.pth")]


def dlgsanet_pairs(path: Path, weights: Path) -> list[Pair]:
    util = stand_in(
        "basicsr.archs.dlgsanet_idynamicdwconv_util",
        IDynamicDWConv=IDynamicDWConvStandIn,
        F=torch.nn.functional,
    )
    arch_util = stand_in("basicsr.archs.arch_util", to_2tuple=_pair, trunc_normal_=nn.init.trunc_normal_)
    stand_ins = {**registry_stand_in(), util.__name__: util, arch_util.__name__: arch_util}
    official = load_official(path, "basicsr.archs.dlgsanet_arch", stand_ins)
    note = "our idynamic op in both (the official one is CuPy, CUDA only)"
    pairs = []
    for name, size in (("DLGSANet-light", 128), ("DLGSANet", 64)):
        preset = dlgsanet.FAMILY.presets[name]
        ours = random_model(lambda preset=preset: DLGSANet(scale=4, **preset), 0.1, small_only=True)
        model = official.DLGSANet(
            upscale=4, buildblock_type="sparseedge", tlc_kernel=dlgsanet.TLC_KERNELS[4], **preset
        )
        model = holding(model, ours.state_dict(), dlgsanet.FAMILY)
        pairs.append(Pair("DLGSANet", f"{name} x4", size, ours, model, "random", note))
    return pairs


def histoformer_pairs(path: Path, weights: Path) -> list[Pair]:
    official = load_official(path, "histoformer_arch")
    preset = histoformer.FAMILY.presets["Histoformer"]
    ours = random_model(lambda: Histoformer(**preset), 0.1)
    model = holding(official.Histoformer(**preset), ours.state_dict(), histoformer.FAMILY)
    padded = Padded(model, histoformer.FACTOR)
    return [Pair("Histoformer", "Histoformer (scale 1)", 128, ours, padded, "random")]


def hogformer_pairs(path: Path, weights: Path) -> list[Pair]:
    official = load_official(path, "hogformer_arch")
    preset = hogformer.FAMILY.presets["HOGformer"]
    ours = random_model(lambda: HOGformer(**preset), 0.02)
    model = holding(official.HOGformer(**preset), ours.state_dict(), hogformer.FAMILY)
    padded = Padded(model, hogformer.PAD_TO)
    return [Pair("HOGformer", "HOGformer (scale 1)", 128, ours, padded, "random")]


def drct_pairs(path: Path, weights: Path) -> list[Pair]:
    import spandrel.architectures.DRCT as official

    preset = drct.FAMILY.presets["DRCT"]
    ours = random_model(lambda: DRCT(scale=4, **preset), 0.02)
    model = official.DRCT(
        upscale=4,
        img_size=64,  # the official option files' patch size (the shift masks it stores)
        depths=[6] * len(preset["num_heads"]),
        **{key: list(value) if isinstance(value, tuple) else value for key, value in preset.items()},
    )
    model = holding(model, ours.state_dict(), drct.FAMILY)
    padded = Padded(model, preset["window_size"], scale=4)
    return [Pair("DRCT", "DRCT x4", 64, ours, padded, "random", "official: spandrel's copy")]


# Family: (checkout directory and official file under --official-root, or None for spandrel; its pairs).
FAMILIES: dict[str, tuple[str | None, Callable[[Path, Path], list[Pair]]]] = {
    "PAN": ("PAN/codes/models/archs/PAN_arch.py", pan_pairs),
    "DRCT": (None, drct_pairs),
    "CFSR": ("CFSR/basicsr/archs/cfsr_arch.py", cfsr_pairs),
    "A2N": ("A2N/code/model/aan.py", a2n_pairs),
    "DLGSANet": ("DLGSANet/basicsr/archs/dlgsanet_arch.py", dlgsanet_pairs),
    "Histoformer": ("Histoformer/basicsr/models/archs/histoformer_arch.py", histoformer_pairs),
    "HOGformer": ("HOGformer/settingI/basicsr/models/archs/hogformer_arch.py", hogformer_pairs),
}
OFFICIAL_WEIGHTS = {"PAN": "PAN/PANx4_DF2K.pth", "CFSR": "CFSR/CFSR_x4.pth", "A2N": "A2N/aan_x2.pt"}


def image_like(size: int) -> torch.Tensor:
    """A smooth (1, 3, size, size) input in [0, 1]: seeded uniform noise at a quarter of the side, bicubic
    upsampled. Trained weights can blow up on pixel noise (the official PAN x4 gives 1e21 on torch.rand)."""
    noise = torch.rand(1, 3, max(size // 4, 1), max(size // 4, 1), generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(noise, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def official_pairs(names: list[str], root: Path, weights: Path) -> tuple[list[Pair], list[str]]:
    """The pairs of the families `names`, and one line for each family skipped (code or weights absent)."""
    pairs, skipped = [], []
    for name in names:
        relative, build = FAMILIES[name]
        path = root / relative if relative else None
        if path is None:
            install_torchvision_stub()
            if importlib.util.find_spec("spandrel") is None:
                skipped.append(f"{name}: spandrel (its official code) is not installed; skipped")
                continue
        elif not path.is_file():
            skipped.append(f"{name}: official code not found at {path}; skipped")
            continue
        if name in OFFICIAL_WEIGHTS and not (weights / OFFICIAL_WEIGHTS[name]).is_file():
            skipped.append(
                f"{name}: official weights not found at {weights / OFFICIAL_WEIGHTS[name]}; skipped"
            )
            continue
        pairs += build(path, weights)
    return pairs, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-root", type=Path, required=True, help="folder of the official checkouts")
    parser.add_argument("--only", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--size", type=int, help="square input side for every network (default: per network)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per network")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", type=Path, default=SHARED / "weights", help="official weight files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does (sr.allocator), for both sides alike
    pairs, skipped = official_pairs(args.only, args.official_root, args.weights)
    runs: dict[str, Callable[[], torch.Tensor]] = {}
    for index, pair in enumerate(pairs):
        pair.size = args.size or pair.size
        x = image_like(pair.size)
        runs[f"{index} ours"] = forward(pair.ours, x)  # in the engine's layout
        runs[f"{index} official"] = forward(pair.official, x)
    load_before = os.getloadavg()[0]
    ms = median_ms(runs, args.repeat)
    load_after = os.getloadavg()[0]
    # As in benchmarks/archs.py: with M_MMAP_THRESHOLD fixed after timing, RSS tracks what one call uses.
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
    peaks = {name: rss_peak_mib(run) for name, run in runs.items()}
    print(
        f"fp32 CPU, {args.threads} threads, batch 1, median of {args.repeat} after 1 warm-up, all runs "
        f"interleaved, freed memory kept as the engine keeps it (sr.allocator); torch {torch.__version__}; "
        f"load average {load_before:.1f} before timing, "
        f"{load_after:.1f} after"
    )
    print(
        "| network | preset | input | ours ms | official ms | official / ours | max abs diff | ours peak MiB "
        "| official peak MiB | weights | notes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for index, pair in enumerate(pairs):
        ours, official = f"{index} ours", f"{index} official"
        diff = (runs[ours]() - runs[official]()).abs().max().item()
        flag = f" (over {DIFF_LIMIT:.0e})" if diff > DIFF_LIMIT else ""
        print(
            f"| {pair.network} | {pair.preset} | {pair.size}x{pair.size} | {ms[ours]:.0f} | "
            f"{ms[official]:.0f} | {ms[official] / ms[ours]:.2f} | {diff:.1e}{flag} | {peaks[ours]:.0f} | "
            f"{peaks[official]:.0f} | {pair.weights} | {pair.note} |"
        )
    if skipped:
        print("\n" + "\n".join(skipped))


if __name__ == "__main__":
    main()
