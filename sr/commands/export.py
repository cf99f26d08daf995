"""Export a model to ONNX (dynamic batch, height and width), verified against PyTorch in ONNX Runtime."""

from __future__ import annotations

import argparse
import re

from sr.commands.common import check_onnx_installed, error, load_or_report

HELP = "export a model to ONNX, verified in ONNX Runtime"
EXAMPLES = """examples:
  sr export -o pan_x4.onnx                       (the bundled default model)
  sr export -m 001_classicalSR_DF2K_s64w8_SwinIR-M_x4.pth -o swinir.onnx --opset 18
  sr export -m PANx2_DF2K.pth -o pan_x2.onnx --static 256x256 --dtype fp16"""


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not HEIGHTxWIDTH, e.g. 256x256")
    return int(match[1]), int(match[2])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_arg", nargs="?", metavar="MODEL", help="weight file or model name (or use -m)")
    parser.add_argument("-m", "--model", help="weight file or model name (default: the bundled PAN x4 model)")
    parser.add_argument(
        "-s", "--scale", type=int, choices=(2, 3, 4, 8), help="scale, where weights do not tell"
    )
    parser.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default="fp32",
        help="precision inside the graph; input and output stay float32 (default: fp32)",
    )
    parser.add_argument(
        "--static", type=_size, metavar="HxW", help="fix the input size instead of dynamic axes"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime comparison")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")


def run(args: argparse.Namespace) -> int:
    missing = check_onnx_installed("sr export")
    if missing:
        error(missing)
        return 2
    from sr.onnx.export import ExportError, export

    if args.model_arg and args.model and args.model_arg != args.model:
        error(f"give the model once (got {args.model_arg} and -m {args.model})")
        return 2
    args.model = args.model or args.model_arg
    if str(args.model or "").lower().endswith(".onnx"):
        error(f"{args.model}: already an ONNX file; give PyTorch weights to export")
        return 2
    if not args.output.lower().endswith(".onnx"):
        error(f"-o {args.output}: the output name must end in .onnx")
        return 2
    args.device, args.backend = "cpu", "torch"
    net = load_or_report(args)
    if net is None:
        return 2
    try:
        report = export(
            net,
            args.output,
            opset=args.opset,
            dtype=args.dtype,
            static=args.static,
            verify=not args.no_verify,
        )
    except ExportError as problem:
        error(str(problem))
        return 1
    print("\n".join(report.lines()))
    return 0
