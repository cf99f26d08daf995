"""Network benchmark, fp32 CPU: each family's light and full preset against the official implementation.

Our RCAN, SwinIR, HAT and DAT run beside spandrel's copies of the official code, SRFormer beside
spandrel_extra_arches', all holding the same state dict; HAN (in no package) beside our RCAN; CAMixerSR
(in no package) beside tests/oracles/camixer_reference.py in fp32 with the same routing draws.

Run from the repository root: `python -m benchmarks.archs [--sizes 64 128] [--repeat 5] [--threads 2]`. Median
time over `--repeat` calls after one warm-up, all networks interleaved in one process; peak memory is the rise
of the resident set (VmHWM, reset through /proc/self/clear_refs) during one forward.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from archs import camixer, dat, hat, srformer, swinir
from archs.camixer import CAMixerSR
from archs.dat import DAT
from archs.han import HAN
from archs.hat import HAT
from archs.rcan import RCAN
from archs.srformer import SRFormer
from archs.swinir import SwinIR
from tests.oracles import camixer_reference
from tests.oracles.torchvision_stub import install as install_torchvision_stub


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_mib(run: Callable[[], object]) -> float:
    """Resident memory the call adds at its peak, in MiB."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    base = _status_mib("VmRSS")
    run()
    return _status_mib("VmHWM") - base


def forward(model: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(x.clone())  # spandrel scales its input in place
    return run


def median_ms(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each run, interleaved so that load changes hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


def spandrel_model(state_dict: dict) -> nn.Module | None:
    install_torchvision_stub()
    try:
        import spandrel
    except ImportError:
        return None
    return spandrel.ModelLoader().load_from_state_dict(state_dict).model.eval()


def srformer_pairs() -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Our SRFormer-light and SRFormer (x4), and the official code (spandrel_extra_arches' copy) holding the
    same state dict, or None where that package is absent."""
    install_torchvision_stub()
    try:
        from spandrel_extra_arches.architectures.SRFormer import SRFormer as Official
    except ImportError:
        Official = None
    pairs = {}
    for name in ("SRFormer-light", "SRFormer"):
        preset = srformer.FAMILY.presets[name]
        ours = SRFormer(scale=4, **preset).eval()
        official = None
        if Official is not None:
            official = Official(upscale=4, **preset).eval()
            official.load_state_dict(ours.state_dict())
        pairs[name] = (ours, official)
    return pairs


def swinir_pairs() -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Our SwinIR-light and SwinIR classic (x4), and the official code (spandrel's copy, built for the s64
    checkpoints) holding the same weights, or None where spandrel is absent. The official model keeps the
    buffers it builds itself (relative-position indices, shift masks), which our state dict leaves out."""
    install_torchvision_stub()
    try:
        from spandrel.architectures.SwinIR import SwinIR as Official
    except ImportError:
        Official = None
    pairs = {}
    for name in ("swinir-light", "swinir-classic"):
        preset = swinir.FAMILY.presets[name]
        ours = SwinIR(scale=4, **preset).eval()
        with torch.no_grad():  # non-zero position bias, as in trained weights
            for key, parameter in ours.named_parameters():
                if key.endswith("relative_position_bias_table"):
                    parameter.normal_(0, 0.02)
        official = None
        if Official is not None:
            official = Official(upscale=4, img_size=64, **preset).eval()
            missing, unexpected = official.load_state_dict(ours.state_dict(), strict=False)
            assert not unexpected and all(swinir.ignored_keys(key) for key in missing)
        pairs[name] = (ours, official)
    return pairs


def hat_pairs() -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Our HAT-S and HAT (x4), and the official code (spandrel's copy) holding the same state dict, index
    buffers included, or None where spandrel is absent."""
    install_torchvision_stub()
    try:
        from spandrel.architectures.HAT import HAT as Official
    except ImportError:
        Official = None
    pairs = {}
    for name in ("HAT-S", "HAT"):
        preset = hat.FAMILY.presets[name]
        ours = HAT(scale=4, **preset).eval()
        with torch.no_grad():  # non-zero position bias, as in trained weights
            for key, parameter in ours.named_parameters():
                if key.endswith("relative_position_bias_table"):
                    parameter.normal_(0, 0.02)
        official = None
        if Official is not None:
            official = Official(upscale=4, **preset).eval()
            official.load_state_dict(ours.state_dict())
        pairs[name] = (ours, official)
    return pairs


def dat_pairs() -> dict[str, tuple[nn.Module, nn.Module | None]]:
    """Our DAT-light and DAT (x4), and the official code (spandrel's copy, built at img_size 64) holding the
    same weights, or None where spandrel is absent. The official model keeps the shift masks it builds itself,
    which our state dict leaves out."""
    install_torchvision_stub()
    try:
        from spandrel.architectures.DAT import DAT as Official
    except ImportError:
        Official = None
    pairs = {}
    for name in ("DAT-light", "DAT"):
        preset = dat.FAMILY.presets[name]
        ours = DAT(scale=4, **preset).eval()
        official = None
        if Official is not None:
            official = Official(upscale=4, img_size=64, **preset).eval()
            missing, unexpected = official.load_state_dict(ours.state_dict(), strict=False)
            assert not unexpected and all(dat.ignored_keys(key) for key in missing)
        pairs[name] = (ours, official)
    return pairs


class Seeded(nn.Module):
    """`run(x)` right after `torch.manual_seed(0)`: CAMixerSR's routing draws repeat from call to call."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.run = run

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        return self.run(x)


def camixer_pairs() -> dict[str, tuple[nn.Module, nn.Module]]:
    """Our CAMixerSR-S (ratio 1.0) and CAMixerSR-light (the official ratio 0.5, routing drawn as officially),
    x4, and the official forward on the same weights: no package holds CAMixerSR, so the transcription in
    tests/oracles, run in fp32. Both are seeded per call, so they draw the same windows."""
    pairs = {}
    for name in ("CAMixerSR-S", "CAMixerSR-light"):
        preset = camixer.FAMILY.presets[name]
        ours = CAMixerSR(scale=4, stochastic=True, **preset).eval()
        official = partial(camixer_reference.camixersr, ours.state_dict(), ratio=preset.get("ratio", 1.0),
                           dtype=torch.float32)
        pairs[name] = (Seeded(ours), Seeded(official))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square LR input sides")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per network and size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rcan = RCAN(scale=4).eval()
    reference = spandrel_model(rcan.state_dict())
    han = HAN(scale=4).eval()
    with torch.no_grad():
        han.la.gamma.fill_(0.5)
        han.csa.gamma.fill_(0.5)
    srformers = srformer_pairs()
    swinirs = swinir_pairs()
    hats = hat_pairs()
    dats = dat_pairs()
    camixers = camixer_pairs()
    runs: dict[int, dict[str, Callable[[], torch.Tensor]]] = {}
    for size in args.sizes:
        x = torch.rand(1, 3, size, size)
        runs[size] = {"RCAN": forward(rcan, x), "HAN": forward(han, x)}
        if reference is not None:
            runs[size]["spandrel RCAN"] = forward(reference, x)
        for name, (ours, official) in {**srformers, **swinirs, **hats, **dats, **camixers}.items():
            runs[size][name] = forward(ours, x)
            if official is not None:
                runs[size][f"official {name}"] = forward(official, x)
    load_before = os.getloadavg()[0]
    ms = {size: median_ms(runs[size], args.repeat) for size in args.sizes}
    # Memory after timing: with M_MMAP_THRESHOLD fixed, big blocks are unmapped when freed and RSS tracks use,
    # but every allocation then faults fresh pages, which would slow the timings down.
    ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
    peaks = {size: {name: peak_mib(run) for name, run in runs[size].items()} for size in args.sizes}
    print(f"fp32 CPU, {args.threads} threads, x4, official sizes (10 groups x 20 blocks, 64 features), "
          f"median of {args.repeat} after 1 warm-up, all networks interleaved; torch {torch.__version__}; "
          f"load average {load_before:.1f} before timing, {os.getloadavg()[0]:.1f} after")
    print("| network | input | ms | compared with | its ms | ratio | peak MiB | its peak MiB | max diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rows = [("HAN", "our RCAN (no HAN package)", "RCAN", "-")]
        if reference is not None:
            diff = (runs[size]["RCAN"]() - runs[size]["spandrel RCAN"]()).abs().max().item()
            rows.insert(0, ("RCAN", "spandrel RCAN", "spandrel RCAN", f"{diff:.1e}"))
        for name, (_, official) in {**srformers, **swinirs, **hats, **dats, **camixers}.items():
            if official is not None:
                diff = (runs[size][name]() - runs[size][f"official {name}"]()).abs().max().item()
                rows.append((name, f"official {name}", f"official {name}", f"{diff:.1e}"))
        for name, label, other, diff_text in rows:
            print(f"| {name} | {size}x{size} | {ms[size][name]:.0f} | {label} | {ms[size][other]:.0f} | "
                  f"{ms[size][name] / ms[size][other]:.2f} | {peaks[size][name]:.0f} | "
                  f"{peaks[size][other]:.0f} | {diff_text} |")


if __name__ == "__main__":
    main()
