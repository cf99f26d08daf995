"""Whether the current call is being traced, exported or compiled, so ops can take the graph-friendly path."""

from __future__ import annotations

import torch


def is_exporting() -> bool:
    """True inside `torch.onnx.export` (either exporter), `torch.jit.trace` or `torch.export`."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_exporting())


def is_graph_capture() -> bool:
    """True while exporting or while `torch.compile` traces the call (shapes may be symbolic: no caches)."""
    return is_exporting() or bool(torch.compiler.is_compiling())
