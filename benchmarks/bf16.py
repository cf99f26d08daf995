"""bf16 against fp32 on CPU, per family: the speed-up of `--dtype bf16` (autocast, as `sr upscale` runs it)
and, where trained weights are here, its PSNR-Y cost on Set5 and Set14.

Run from the repository root: `python -m benchmarks.bf16 [--threads 2] [--repeat 5] [--sets Set5 Set14]
[--only PAN CFSR ...]`. Every preset of the issue's table, x4: light networks at 128x128 LR, full ones at
64x64; fp32 and bf16 calls interleaved, median of `--repeat` after one warm-up. Trained weights: the official
PAN x4, CFSR x4, A2N x2 and CAMixerSR-S files in `--weights` (default $SR_SHARED/weights or
../shared/weights); the other presets get seeded random weights (speed only: how far bf16 moves the output
is a property of trained weights). The header says whether the CPU has native bf16 (AVX512-BF16, AMX).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import torch

import archs
import sr
from benchmarks.archs import median_ms
from sr.allocator import keep_freed_memory
from sr.evaluate import dataset_dirs, evaluate_set, find_pairs
from sr.loading import channels_last_weights
from sr.upscale import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SR_SHARED", ROOT.parent / "shared"))
# (family, preset, LR side): the presets, light at 128, full at 64.
PRESETS = [
    ("PAN", "PAN", 128),
    ("RCAN", "RCAN", 64),
    ("HAN", "HAN", 64),
    ("SwinIR", "swinir-classic", 64),
    ("SRFormer", "SRFormer", 64),
    ("DAT", "DAT", 64),
    ("SwinIR", "swinir-light", 128),
    ("HAT", "HAT-S", 64),
    ("CAMixerSR", "CAMixerSR-S", 128),
    ("SRFormer", "SRFormer-light", 128),
    ("DAT", "DAT-light", 128),
    ("DRCT", "DRCT", 64),
    ("CFSR", "CFSR", 128),
    ("A2N", "A2N", 128),
    ("DLGSANet", "DLGSANet-light", 128),
    ("Histoformer", "Histoformer", 128),
    ("HOGformer", "HOGformer", 128),
]
TRAINED = {
    "PAN": "PAN/PANx4_DF2K.pth",
    "CFSR": "CFSR/CFSR_x4.pth",
    "A2N": "A2N/aan_x2.pt",
    "CAMixerSR-S": "CAMixerSR/CAMixerSR_S.pth",
}


def random_model(family_name: str, preset_name: str) -> sr.LoadedModel:
    """A preset x4 (scale 1 for restoration-only families) with seeded weights, as a LoadedModel."""
    family = archs.get_family(family_name)
    preset = dict(family.presets[preset_name])
    if family.scales != (1,):
        preset["scale"] = 4
    torch.manual_seed(0)
    model = family.build(**preset).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
    if family.channels_last:  # the engine's layout, as sr.load_model gives it
        channels_last_weights(model)
    return sr.LoadedModel(
        model=model,
        family=family.name,
        scale=preset.get("scale", 1),
        params=preset,
        multiple_of=family.multiple_of,
        supports_fp16=family.supports_fp16,
        supports_bf16=family.supports_bf16,
        source="random weights",
        channels_last=family.channels_last,
    )


def timed(net: sr.LoadedModel, size: int, repeat: int) -> tuple[float, float]:
    """Median ms of fp32 and bf16 forwards on one random input (in the engine's layout), interleaved."""
    x = torch.rand(1, 3, size, size)
    if net.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def run(bf16: bool) -> Callable[[], object]:
        def call() -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                net.model(x)

        return call

    ms = median_ms({"fp32": run(False), "bf16": run(True)}, repeat)
    return ms["fp32"], ms["bf16"]


def psnr_cost(net: sr.LoadedModel, sets: list[str]) -> str:
    """'Set5 −0.001, Set14 −0.002' dB: bf16 PSNR-Y minus fp32 PSNR-Y on each set."""
    costs = []
    for name in sets:
        pairs = find_pairs(*dataset_dirs(name, net.scale, SHARED / "data" / "benchmarks"))
        fp32 = evaluate_set(net, name, pairs, dtype=torch.float32).psnr
        bf16 = evaluate_set(net, name, pairs, dtype=torch.bfloat16).psnr
        costs.append(f"{name} {bf16 - fp32:+.3f}")
    return ", ".join(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    parser.add_argument("--only", nargs="+", help="families to run (default: all)")
    parser.add_argument("--weights", type=Path, default=SHARED / "weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does (sr.allocator), for both sides alike
    load_before = os.getloadavg()[0]
    rows = []
    for family, preset, size in PRESETS:
        if args.only and family not in args.only:
            continue
        trained = TRAINED.get(preset)
        if trained and (args.weights / trained).is_file():
            net = sr.load_model(args.weights / trained, scale=2 if family == "A2N" else None)
        else:
            net, trained = random_model(family, preset), None
        fp32_ms, bf16_ms = timed(net, size, args.repeat)
        cost = psnr_cost(net, args.sets) if trained else "- (random weights)"
        rows.append(
            f"| {preset} x{net.scale} | {size}x{size} | {fp32_ms:.0f} | {bf16_ms:.0f} | "
            f"{fp32_ms / bf16_ms:.2f} | {cost} | {'yes' if net.supports_bf16 else 'no (fp32 default)'} |"
        )
        print(rows[-1], flush=True)
    print(
        f"\nCPU, {args.threads} threads, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; "
        f"median of {args.repeat} after 1 warm-up, fp32 and bf16 interleaved; torch {torch.__version__}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print("| network | input | fp32 ms | bf16 ms | speed-up | PSNR-Y cost of bf16 (dB) | bf16-safe flag |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
