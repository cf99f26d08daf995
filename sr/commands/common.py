"""Pieces shared by subcommands: loading a model with a one-line error, device and thread setup, and the
message for an optional extra that is not installed."""

from __future__ import annotations

import argparse
import sys


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    scale: bool = True,
    default: str = "the bundled PAN x4 model",
) -> None:
    parser.add_argument(
        "-m",
        "--model",
        required=required,
        help="weight file (.pth/.pt/.ckpt/.safetensors/.onnx) or a model name from `sr models`"
        + ("" if required else f" (default: {default})"),
    )
    if scale:
        parser.add_argument(
            "-s",
            "--scale",
            type=int,
            choices=(2, 3, 4, 8),
            help="upscaling factor, needed only where the weights do not tell (PAN x2 vs x3)",
        )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads for PyTorch (default: all cores)")


PRECISIONS = ("auto", "fp32", "bf16")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Tiling and compute precision of the inference engine."""
    parser.add_argument(
        "--tile", type=int, help="LR tile side in pixels; 0 = no tiling (default: tile images above 512x512)"
    )
    parser.add_argument(
        "--tile-overlap", type=int, default=64, help="LR pixels shared by neighbouring tiles (default: 64)"
    )
    parser.add_argument(
        "--dtype",
        dest="precision",
        choices=PRECISIONS,
        default="auto",
        help="compute precision: bf16 autocast is faster on CPUs with native bf16 (AVX512-BF16, AMX) and "
        "GPUs (default auto: bf16 on CUDA for families whose output bf16 keeps, else fp32)",
    )


def add_jpeg_constraint_argument(parser: argparse.ArgumentParser, applies: str) -> None:
    parser.add_argument(
        "--no-jpeg-constraint",
        action="store_true",
        help=f"keep the network's output as it is: by default {applies} is held to the JPEG quantisation "
        "intervals of its input's luma (it never moves further from the original; see sr.jpeg_constraint)",
    )


def engine_dtype(args: argparse.Namespace):
    """The torch dtype `--dtype` asks for, or None for the engine's default."""
    import torch

    return {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}[getattr(args, "precision", "auto")]


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="inference engine: PyTorch, or ONNX Runtime (PyTorch weights are exported and cached on first "
        "use; an .onnx model always uses ONNX Runtime)",
    )
    parser.add_argument(
        "--providers",
        type=lambda text: [p for p in text.split(",") if p],
        help="ONNX Runtime providers in order of preference, e.g. cuda or tensorrt,cuda (default: cpu)",
    )


def error(message: str) -> None:
    """Print a one-line error to stderr."""
    print(f"sr: error: {message}", file=sys.stderr)


def load_or_report(args: argparse.Namespace):
    """The LoadedModel for `args`, or None after printing a one-line error."""
    import torch

    from sr.loading import ModelLoadError, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        error(f"--device {args.device}: CUDA is not available on this machine")
        return None
    scale = getattr(args, "scale", None)
    try:
        onnx = getattr(args, "backend", "torch") == "onnx" or str(args.model or "").lower().endswith(".onnx")
        if onnx and getattr(args, "precision", "auto") != "auto":
            error(
                f"--dtype {args.precision}: applies to the PyTorch engine (an ONNX model runs in the "
                "precision it was exported in: sr export --dtype)"
            )
            return None
        if onnx:
            from sr.onnx.runtime import load_onnx_model

            return load_onnx_model(args.model, scale=scale, providers=getattr(args, "providers", None))
        net = load_model(args.model, scale=scale, device=args.device)
    except ModelLoadError as problem:
        error(str(problem))
        return None
    except ImportError as missing:  # the ONNX extra is optional
        error(missing_extra("--backend onnx", missing, "onnx"))
        return None
    if getattr(args, "precision", "auto") == "bf16":
        _bf16_notes(net)
    return net


def _bf16_notes(net) -> None:
    """One-line notes where `--dtype bf16` will be slow or costly (it still runs)."""
    from sr.upscale import cpu_has_native_bf16

    device = next(net.model.parameters()).device
    if device.type == "cpu" and not cpu_has_native_bf16():
        print(
            "sr: note: this CPU has no native bf16 (AVX512-BF16, AMX): bf16 is emulated, slower than fp32",
            file=sys.stderr,
        )
    if not net.supports_bf16:
        print(
            f"sr: note: {net.family} runs in fp32 by default: bf16 changes its output more than for other "
            "families (see benchmarks/RESULTS.md)",
            file=sys.stderr,
        )


ONNX_MODULES = ("onnx", "onnxruntime")


def missing_extra(feature: str, missing: ImportError, extra: str) -> str:
    """The one-line message for a feature whose optional dependencies are not installed."""
    package = missing.name or "an optional package"
    return f"{feature} needs {package}, which is not installed: pip install 'sr[{extra}]'"


def check_onnx_installed(feature: str) -> str | None:
    """None if ONNX and ONNX Runtime import, else the one-line message naming the extra to install."""
    try:
        for name in ONNX_MODULES:
            __import__(name)
    except ImportError as missing:
        return missing_extra(feature, missing, "onnx")
    return None
