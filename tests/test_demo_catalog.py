"""The demo's model catalog: what it offers, the loaded-model cache, and the fall back to PyTorch."""

from __future__ import annotations

from pathlib import Path

import pytest

import sr.onnx.runtime
from sr import zoo
from sr.loading import ModelLoadError
from webui.catalog import Engines, discover, label


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
    assert list(offered)[:8] == [
        "default", "realworld", "denoise", "jpeg", "PAN-x3", "a.onnx", "b.safetensors", "c.pth"
    ]
    assert offered["PAN-x3"] == "PAN-x3" and offered["a.onnx"] == str(folder / "a.onnx")
    # then every zoo model that can be downloaded, in catalogue order
    downloadable = [e.name for e in zoo.ZOO.values() if e.urls and not e.unsupported and e.name != "PAN-x3"]
    assert list(offered)[8:] == downloadable
    # the zoo's own folder as the models folder lists its files once, by zoo name
    assert list(discover(models_dir))[:5] == ["default", "realworld", "denoise", "jpeg", "PAN-x3"]
    # a task offers its own bundled model first and no model of another task
    jpeg_models = [e.name for e in zoo.ZOO.values() if e.task == "jpeg"]
    assert list(discover(models_dir, "jpeg")) == ["jpeg", *jpeg_models]
    assert list(discover(models_dir, "sr"))[:3] == ["default", "realworld", "PAN-x3"]
    assert "denoise" not in discover(models_dir, "sr") and "default" not in discover(models_dir, "denoise")


def test_labels_say_what_a_choice_costs_and_allows(models_dir, pan_weights):
    (models_dir / "PANx3_DF2K.pth").symlink_to(pan_weights / "PANx3_DF2K.pth")
    assert label("PAN-x3") == "PAN-x3" and label("default") == "default"
    assert label("PAN-x2") == "PAN-x2 (download 1 MB)"
    assert label("SRFormer-x4") == "SRFormer-x4 (download 97 MB, non-commercial licence)"
    assert label("SRFormer-x2") == "SRFormer-x2 (download, non-commercial licence)"


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


def test_a_zoo_model_is_downloaded_when_first_chosen(models_dir, pan_weights, monkeypatch):
    from dataclasses import replace

    source = (pan_weights / "PANx2_DF2K.pth").resolve().as_uri()
    monkeypatch.setitem(zoo.ZOO, "pan-x2", replace(zoo.lookup("PAN-x2"), urls=(source,)))
    assert "PAN-x2" in discover(None) and not zoo.is_cached(zoo.lookup("PAN-x2"))
    net, note = Engines().get("PAN-x2", "torch")
    assert (net.family, net.scale, note) == ("PAN", 2, "")
    assert zoo.is_cached(zoo.lookup("PAN-x2")) and label("PAN-x2") == "PAN-x2"
