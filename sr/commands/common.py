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


def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tile", type=int, help="LR tile side in pixels; 0 = no tiling (default: tile images above 512x512)"
    )
    parser.add_argument(
        "--tile-overlap", type=int, default=64, help="LR pixels shared by neighbouring tiles (default: 64)"
    )


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
        if onnx:
            from sr.onnx.runtime import load_onnx_model

            return load_onnx_model(args.model, scale=scale, providers=getattr(args, "providers", None))
        return load_model(args.model, scale=scale, device=args.device)
    except ModelLoadError as problem:
        error(str(problem))
        return None
    except ImportError as missing:  # the ONNX extra is optional
        error(missing_extra("--backend onnx", missing, "onnx"))
        return None


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
