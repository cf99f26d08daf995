"""`sr demo`: serve the web demo on this machine (the `sr` command finds it through an entry point)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HELP = "serve the web demo (Gradio) in the browser"
EXAMPLES = """examples:
  sr demo                                 # http://127.0.0.1:7860
  sr demo --host 0.0.0.0 --port 8080 --models ~/sr-models --max-pixels 4000000"""

_SIZE = re.compile(r"(?i)^\s*\d+(\.\d+)?\s*(b|kb|mb|gb)?\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument(
        "--models",
        type=Path,
        help="folder of weight or .onnx files to offer besides the default model (default: the model cache, "
        "$SR_MODELS_DIR)",
    )
    parser.add_argument(
        "--share", action="store_true", help="also open a public gradio.live link (off by default)"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=2_000_000, help="largest input in pixels (default: 2000000)"
    )
    parser.add_argument("--max-file-size", default="25mb", help="largest upload, e.g. 25mb (default: 25mb)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests run at once; the rest wait in order (default: 1)"
    )
    parser.add_argument("--queue-size", type=int, default=16, help="requests that may wait (default: 16)")
    parser.add_argument("--threads", type=int, help="CPU threads for inference (default: all cores)")


def run(args: argparse.Namespace) -> int:
    problems = [
        f"--port {args.port}: must be between 1 and 65535" if not 0 < args.port < 65536 else "",
        f"--max-pixels {args.max_pixels}: must be positive" if args.max_pixels <= 0 else "",
        f"--max-file-size {args.max_file_size}: use a size such as 25mb"
        if not _SIZE.match(args.max_file_size)
        else "",
        f"--concurrency {args.concurrency}: must be at least 1" if args.concurrency < 1 else "",
        f"--queue-size {args.queue_size}: must be at least 1" if args.queue_size < 1 else "",
        f"--models {args.models}: no such folder" if args.models and not args.models.is_dir() else "",
    ]
    for problem in filter(None, problems):
        print(f"sr: error: {problem}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        from webui.app import Limits, build, launch
    except ImportError as missing:
        print(f"sr: error: the demo needs {missing.name}: pip install 'sr[demo]'", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from sr import zoo

    limits = Limits(args.max_pixels, args.max_file_size, args.concurrency, args.queue_size)
    demo = build(args.models or zoo.models_dir(), limits)
    try:
        where = launch(demo, host=args.host, port=args.port, share=args.share, limits=limits)
    except OSError as problem:
        in_use = "empty port" in str(problem)  # Gradio's words for a port taken by another program
        reason = (
            "the port is in use (choose another with --port)" if in_use else " ".join(str(problem).split())
        )
        print(f"sr: error: cannot serve on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    print(f"sr demo: serving on {where} (Ctrl+C to stop)", flush=True)
    demo.block_thread()
    return 0
