"""ONNX Runtime inference behind the same interface as a PyTorch model, so the tiling/padding/I/O engine
(`sr.upscale`) runs `.onnx` files unchanged; PyTorch weights are exported and cached on first use.

Sessions and the module that runs them live in `sr.onnx.session` (why they flush subnormal floats: there).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sr import zoo
from sr.loading import LoadedModel, ModelLoadError, load_model, resolve
from sr.onnx.export import DEFAULT_OPSET, ExportError, export
from sr.onnx.session import OrtModule, session

__all__ = ["OrtModule", "cache_path", "load_onnx_file", "load_onnx_model", "read_metadata", "session"]

REQUIRED_METADATA = ("sr.family", "sr.scale", "sr.multiple_of")


def read_metadata(path: Path) -> dict[str, str]:
    """The sr.* metadata of an ONNX file, or a ModelLoadError naming the file and the problem."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf raises assorted errors on garbage
        raise ModelLoadError(
            f"{path}: not a valid ONNX file ({' '.join(str(error).split())[:120]})"
        ) from None
    meta = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelLoadError(
            f"{path}: not a model exported by sr (no {missing[0]} metadata; export one with `sr export`)"
        )
    return meta


def load_onnx_file(path: str | os.PathLike, providers: list[str] | None = None) -> LoadedModel:
    """An exported `.onnx` file as a LoadedModel running on ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    meta = read_metadata(path)
    try:
        sess = session(path, providers)
    except RuntimeError as error:
        raise ModelLoadError(f"{path}: ONNX Runtime cannot load it ({error})") from None
    return LoadedModel(
        model=OrtModule(sess),
        family=meta["sr.family"],
        scale=int(meta["sr.scale"]),
        params=json.loads(meta.get("sr.params", "{}")),
        multiple_of=int(meta["sr.multiple_of"]),
        supports_fp16=False,
        supports_bf16=False,
        source=str(path),
        in_channels=1 if meta.get("sr.channel_order") == "gray" else 3,
    )


def cache_path(weights: Path, scale: int, opset: int) -> Path:
    digest = zoo.sha256_of(weights)[:16]
    return zoo.models_dir() / "onnx" / f"{weights.stem}-{digest}-x{scale}-opset{opset}.onnx"


def load_onnx_model(
    path_or_name: str | os.PathLike | None = None,
    scale: int | None = None,
    providers: list[str] | None = None,
) -> LoadedModel:
    """ONNX Runtime model for an `.onnx` file, or for PyTorch weights (exported, verified and cached once)."""
    if path_or_name is not None and str(path_or_name).lower().endswith(".onnx"):
        return load_onnx_file(path_or_name, providers)
    weights = resolve(path_or_name)
    net = load_model(weights, scale=scale)
    cached = cache_path(weights, net.scale, DEFAULT_OPSET)
    if not cached.is_file():
        try:
            export(net, cached)
        except ExportError as error:
            raise ModelLoadError(str(error)) from None
    return load_onnx_file(cached, providers)
