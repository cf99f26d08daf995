"""ONNX Runtime sessions and the module that runs one behind a PyTorch model's interface; shared by export
(verification) and runtime (inference), so both depend on this file and not on each other.

Sessions flush subnormal floats to zero. The shifted-window masks add −100 to the scores of token pairs from
different regions, so softmax gives those pairs weights near e^−100, below the normal float32 range (1.2e-38);
x86 CPUs handle subnormal operands in microcode, and in every shifted block ONNX Runtime's Softmax and the
MatMul with V ran several times slower (PyTorch's fused SDPA kernel is not affected). Flushing only zeroes
values below 1.2e-38 in magnitude. ONNX Runtime flushes on its worker threads
(`session.set_denormal_as_zero`); the thread that calls `run` computes a share of each operator too, so
`OrtModule` flushes on it during each run, and `session` undoes the mode that ONNX Runtime leaves set on the
thread that creates the process's first session (benchmarks/RESULTS.md, "ONNX Runtime vs PyTorch eager").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from sr.loading import ModelLoadError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def providers_for(names: list[str] | None) -> list[str]:
    """ONNX Runtime provider names for short or full names, checked against what is installed."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = []
    for name in names or ["cpu"]:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            raise ModelLoadError(
                f"ONNX Runtime provider {name}: not installed (available: {', '.join(available)})"
            )
        chosen.append(full)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")  # fallback for nodes other providers do not take
    return chosen


@contextmanager
def flushing_subnormals() -> Iterator[None]:
    """Flush subnormal floats to zero on this thread inside the block, then restore the previous mode."""
    was_flushing = np.float32(1e-39) * np.float32(1.0) == 0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_flushing:
            torch.set_flush_denormal(False)


def session(path: str | os.PathLike, providers: list[str] | None = None):
    """An ONNX Runtime session using this process's PyTorch thread count, flushing subnormals to zero."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    try:
        with flushing_subnormals():  # ONNX Runtime may set the mode here for good
            return ort.InferenceSession(str(path), options, providers=providers_for(providers))
    except (
        ort.capi.onnxruntime_pybind11_state.Fail,
        ort.capi.onnxruntime_pybind11_state.InvalidGraph,
        ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
        ort.capi.onnxruntime_pybind11_state.NoSuchFile,
        ort.capi.onnxruntime_pybind11_state.NotImplemented,
    ) as error:
        raise RuntimeError(" ".join(str(error).split())[:300]) from None


class OrtModule(torch.nn.Module):
    """Calls an ONNX Runtime session on N x C x H x W float tensors, returning float32 tensors."""

    def __init__(self, sess) -> None:
        super().__init__()
        self.session = sess
        self.input_name = sess.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        with flushing_subnormals():
            out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)
