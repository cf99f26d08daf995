"""What a new user meets first: optional extras that are missing, folders with files that are not images,
multi-frame and 32-bit images — each a one-line message, never a traceback or a silent half-result."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from sr.cli import main
from sr.imageio import Image, ImageError, read_image, write_image


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(0)
    write_image(images / "a.png", Image(rng.random((12, 10, 3)).astype(np.float32)))
    write_image(images / "b.jpg", Image(rng.random((12, 10, 3)).astype(np.float32)))
    for name in ("logo.svg", "anim.gif", "anim2.gif", "notes.txt", "README"):
        (images / name).write_text("not for sr")
    return images


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("sr: error:")]


@pytest.mark.parametrize("command", ["export", "upscale --backend onnx"])
def test_missing_onnx_extra_is_one_line(command, folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SR_MODELS_DIR", str(tmp_path / "cache"))
    for name in ("onnx", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    if command == "export":
        out = tmp_path / "x.onnx"
        argv = ["export", "-o", str(out)]
    else:
        out = tmp_path / "out.png"
        argv = ["upscale", str(folder / "a.png"), "-o", str(out), "--backend", "onnx"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'sr[onnx]'" in err[0] and " needs onnx" in err[0], err
    assert not out.exists()


def test_folder_run_lists_what_it_skipped(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.jpg"]
    notes = [line for line in captured.err.splitlines() if line.startswith("sr: note:")]
    assert notes == [
        "sr: note: skipped 5 file(s) that are neither images nor videos "
        "(.gif 2, (no extension) 1, .svg 1, .txt 1)"
    ]
    # a glob too; a pattern that matches only non-images is an error naming it
    assert main(["upscale", str(folder / "*"), "-o", str(tmp_path / "out2")]) == 0
    assert "skipped 5 file(s) that are neither" in capsys.readouterr().err
    assert main(["upscale", str(folder / "*.gif"), "-o", str(tmp_path / "out3")]) == 1
    err = capsys.readouterr().err
    assert f"{folder / '*.gif'}: matches no images or videos" in err and "skipped 2 file(s)" in err


@pytest.mark.parametrize("suffix, kind", [(".png", "frames"), (".webp", "frames"), (".tif", "pages")])
def test_multi_frame_images_are_refused_in_one_line(tmp_path, folder, suffix, kind, capsys):
    frames = [PILImage.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)) for i in range(3)]
    path = folder / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match=f"with 3 {kind}: only single-frame images are supported"):
        read_image(path)
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out)]) == 1  # the rest of the batch is still processed
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and path.name in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["a_x4.png", "b_x4.jpg"]


def test_float_tiff_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "float.tif"
    PILImage.fromarray(np.random.default_rng(1).random((8, 8)).astype(np.float32)).save(path)
    with pytest.raises(ImageError, match="32-bit floating-point samples are not supported"):
        read_image(path)


def test_missing_demo_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)
    for name in [m for m in sys.modules if m.startswith("webui.app")]:
        monkeypatch.delitem(sys.modules, name)
    assert main(["demo", "--port", "7999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sr: error: the demo needs gradio: pip install 'sr[demo]'"]
