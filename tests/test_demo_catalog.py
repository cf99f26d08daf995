"""The demo's model catalog: what it offers, the loaded-model cache, and the fall back to PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest

import sr.onnx.runtime
from sr.loading import ModelLoadError
from webui.catalog import Engines, discover


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv("SR_MODELS_DIR", str(folder))
    return folder


def test_offers_default_cached_zoo_models_and_folder_files(models_dir, pan_weights, tmp_path):
    (models_dir / "PANx3_DF2K.pth").symlink_to(pan_weights / "PANx3_DF2K.pth")
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("b.safetensors", "a.onnx", "notes.txt", "c.pth"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.pth").mkdir()
    offered = discover(folder)
    assert list(offered) == ["default", "PAN-x3", "a.onnx", "b.safetensors", "c.pth"]
    assert offered["PAN-x3"] == "PAN-x3" and offered["a.onnx"] == str(folder / "a.onnx")
    # the zoo's own folder as the models folder lists its files once, by zoo name
    assert list(discover(models_dir)) == ["default", "PAN-x3"]


def test_engines_keep_the_most_recent_two(models_dir, pan_weights):
    engines = Engines(size=2)
    x2, x3 = str(pan_weights / "PANx2_DF2K.pth"), str(pan_weights / "PANx3_DF2K.pth")
    first, _ = engines.get(x2, "torch")
    assert engines.get(x2, "torch")[0] is first
    engines.get(x3, "torch")
    engines.get("default", "torch")
    assert engines.get(x2, "torch")[0] is not first  # dropped as least recently used, loaded again


def test_onnx_failure_falls_back_to_pytorch_with_a_note(models_dir, monkeypatch):
    def broken_export(source, **_):
        raise ModelLoadError(f"{source}: export failed: unsupported operator")

    monkeypatch.setattr(sr.onnx.runtime, "load_onnx_model", broken_export)
    net, note = Engines().get("default", "onnx")
    assert type(net.model).__name__ == "PAN"
    assert note == "no ONNX model (default: export failed: unsupported operator); ran on PyTorch"


def test_bad_weights_are_an_error_on_either_backend(models_dir, tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    for backend in ("onnx", "torch"):
        with pytest.raises(ModelLoadError, match="broken.pth"):
            Engines().get(str(bad), backend)
