"""Export a loaded network to one self-contained `.onnx` file with dynamic batch/height/width, metadata that
makes the file self-describing, and verification against PyTorch in ONNX Runtime at other input sizes.

Networks build their masks, indices and padding from tensor shapes (the `kernels` helpers) and attention
takes its plain-math path while exporting, so one export serves every input size.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import archs
from sr import __version__
from sr.atomic import write_atomically
from sr.loading import LoadedModel
from sr.onnx.session import session

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}
DEFAULT_OPSET = 17
TWO_GB = 2**31
META_PREFIX = "sr."


class ExportError(ValueError):
    """Export or verification failed; the message is one line."""


@dataclass
class Check:
    shape: tuple[int, ...]
    max_abs_diff: float


@dataclass
class ExportReport:
    path: Path
    export_shape: tuple[int, ...]
    tolerance: float
    checks: list[Check] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [
            f"exported {self.metadata['sr.family']} x{self.metadata['sr.scale']} "
            f"({self.metadata['sr.channel_order']}) "
            f"-> {self.path} "
            f"(opset {self.metadata['sr.opset']}, {self.metadata['sr.dtype']}, traced at "
            f"{self.export_shape[2]}x{self.export_shape[3]}, {self.path.stat().st_size / 2**20:.1f} MiB)"
        ]
        out += [
            f"  ONNX Runtime vs PyTorch at {'x'.join(map(str, c.shape))}: max abs diff {c.max_abs_diff:.2e} "
            f"(limit {self.tolerance:g})"
            for c in self.checks
        ]
        return out


def preset_of(net: LoadedModel) -> str:
    """The family preset whose settings the network's parameters include, else 'custom'."""
    family = archs.get_family(net.family)
    for name, settings in family.presets.items():
        if all(_same(net.params.get(k), v) for k, v in settings.items() if k != "img_size"):
            return name
    return "custom"


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def metadata(net: LoadedModel, dtype: str, opset: int, static: tuple[int, int] | None) -> dict[str, str]:
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in net.params.items()}
    return {
        "sr.family": net.family,
        "sr.preset": preset_of(net),
        "sr.scale": str(net.scale),
        "sr.multiple_of": str(net.multiple_of),
        "sr.params": json.dumps(params, sort_keys=True),
        "sr.input_range": "0..1",
        "sr.channel_order": "RGB" if net.in_channels == 3 else "gray",
        "sr.layout": "NCHW",
        "sr.dtype": dtype,
        "sr.opset": str(opset),
        "sr.static_size": f"{static[0]}x{static[1]}" if static else "dynamic",
        "sr.source": Path(net.source).name,
        "sr.version": __version__,
    }


class _Casting(torch.nn.Module):
    """fp32 in and out, the network inside in `dtype` (so every runtime can feed the graph)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model.to(dtype), dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype)).float()


def _example_shape(net: LoadedModel, static: tuple[int, int] | None) -> tuple[int, int, int, int]:
    c = net.in_channels
    if static:
        return (1, c, *static)
    m = max(net.multiple_of, 8)
    return (1, c, 2 * m + 3, 3 * m - 5)  # not window multiples: the padding path is traced too


def verification_shapes(net: LoadedModel, static: tuple[int, int] | None) -> list[tuple[int, int, int, int]]:
    """Three input shapes unlike the export shape (a batch of 2, sizes off the window grid)."""
    c = net.in_channels
    if static:
        return [(1, c, *static), (2, c, *static)]
    m = max(net.multiple_of, 8)
    return [(1, c, m + 5, 2 * m + 1), (2, c, 2 * m, m + 7), (1, c, 3 * m + 1, 3 * m + 2)]


def _sample(shape: tuple[int, ...]) -> torch.Tensor:
    """Smooth image-like input: trained networks misbehave on i.i.d. noise, which is not a fair test."""
    n, c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.5 + 0.4 * torch.sin(6 * xx + 2 * yy + k) for k in range(c)])
    g = torch.Generator().manual_seed(h * 1000 + w)
    return (base[None].repeat(n, 1, 1, 1) + 0.05 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)


def export(
    net: LoadedModel,
    out: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dtype: str = "fp32",
    static: tuple[int, int] | None = None,
    verify: bool = True,
    providers: list[str] | None = None,
) -> ExportReport:
    """Write `net` to `out` as ONNX (atomically) and, unless verify=False, check it against PyTorch."""
    import onnx

    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    out = Path(out)
    model = net.model.eval().to("cpu")
    if dtype != "fp32":
        model = _Casting(model, DTYPES[dtype])
    shape = _example_shape(net, static)
    example = _sample(shape)
    if static:  # fixed height and width; the batch stays free
        dynamic = {"input": {0: "batch"}, "output": {0: "batch"}}
    else:
        dynamic = {
            "input": {0: "batch", 2: "height", 3: "width"},
            "output": {0: "batch", 2: "out_height", 3: "out_width"},
        }
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                buffer,
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
    except Exception as error:  # noqa: BLE001 - the exporter raises many types; report one line
        raise ExportError(f"{net.source}: export failed: {' '.join(str(error).split())[:300]}") from None
    proto = onnx.load_from_string(buffer.getvalue())
    info = metadata(net, dtype, opset, static)
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "sr"
    try:
        onnx.checker.check_model(proto, full_check=False)
    except onnx.checker.ValidationError as error:
        raise ExportError(
            f"{out}: the ONNX checker rejects the graph: {str(error).splitlines()[0]}"
        ) from None
    _write(proto, out)
    report = ExportReport(out, shape, TOLERANCE[dtype], metadata=info)
    if verify:
        _verify(net, model, out, report, static, dtype, providers)
    return report


def _write(proto, out: Path) -> None:
    import onnx

    large = proto.ByteSize() >= TWO_GB
    location = f"{out.name}.data" if large else None

    def save(tmp: str) -> None:
        onnx.save_model(proto, tmp, save_as_external_data=large, location=location)

    write_atomically(out, save)


def _verify(net, model, path: Path, report: ExportReport, static, dtype: str, providers) -> None:
    try:
        sess = session(path, providers)
    except RuntimeError as error:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{path}: ONNX Runtime cannot run this {dtype} graph ({error}); file removed "
            "(export with --no-verify to keep it for another runtime)"
        ) from None
    for shape in verification_shapes(net, static):
        x = _sample(shape)
        with torch.no_grad():
            expected = model(x).float().numpy()
        got = sess.run(None, {"input": x.numpy()})[0].astype(np.float32)
        if got.shape != expected.shape:
            raise ExportError(
                f"{path}: ONNX Runtime gives shape {got.shape} at input {shape}, PyTorch {expected.shape}"
            )
        diff = float(np.abs(got - expected).max())
        report.checks.append(Check(shape, diff))
        if not diff <= report.tolerance:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"{path}: verification failed at input {'x'.join(map(str, shape))}: "
                f"max abs diff {diff:.3g} > {report.tolerance:g} (file removed)"
            )
