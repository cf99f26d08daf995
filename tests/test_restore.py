"""`sr restore` and scale-1 models end to end: batch semantics shared with `sr upscale`, gray models, alpha
and 16-bit, the wrong command for a model, ONNX Runtime, and zoo files trusted on first use over HTTP."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import sr
from archs.swinir import SwinIR
from sr import zoo
from sr.checkpoint import SETTINGS_KEY
from sr.cli import main
from sr.imageio import Image, read_image, write_image
from sr.loading import ModelLoadError


def tiny_restorer(
    path, in_chans: int = 3, window: int = 4, img_range: float = 1.0, settings: dict | None = None
):
    """A small scale-1 SwinIR with random weights whose output stays near its input, saved at `path`."""
    torch.manual_seed(in_chans * 10 + window)
    model = SwinIR(
        scale=1,
        in_chans=in_chans,
        embed_dim=12,
        depths=(2,),
        num_heads=(2,),
        window_size=window,
        mlp_ratio=2.0,
        upsampler="",
        img_range=img_range,
    )
    with torch.no_grad():
        model.conv_last.weight.mul_(0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path), metadata={SETTINGS_KEY: __import__("json").dumps(settings or {})})
    else:
        torch.save({"params": state}, path)
    return path


@pytest.fixture
def images(tmp_path):
    """Colour, gray, RGBA and 16-bit colour images plus one broken file, in one folder."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    base = np.clip(np.linspace(0, 1, 30)[None, :, None] + 0.1 * rng.standard_normal((20, 30, 3)), 0, 1)
    write_image(folder / "colour.png", Image(base.astype(np.float32)))
    write_image(folder / "gray.png", Image(base[..., :1].astype(np.float32)))
    alpha = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    write_image(folder / "rgba.png", Image(base.astype(np.float32), alpha=alpha))
    write_image(folder / "deep.png", Image(base.astype(np.float32), bit_depth=16))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    return folder


def _outputs(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_restore_batch_keeps_modes_and_reports_bad_files(tmp_path, images, capsys):
    model = tiny_restorer(tmp_path / "restorer.pth")
    out = tmp_path / "out"
    code = main(["restore", str(images), "-o", str(out), "-m", str(model)])
    captured = capsys.readouterr()
    assert code == 1
    assert _outputs(out) == [
        "colour_restored.png",
        "deep_restored.png",
        "gray_restored.png",
        "rgba_restored.png",
    ]
    errors = [line for line in captured.err.splitlines() if line.startswith("sr: error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "restored 4 of 5 file(s) with SwinIR" in captured.out
    gray = read_image(out / "gray_restored.png")
    assert gray.pixels.shape == (20, 30, 1)
    rgba, source = read_image(out / "rgba_restored.png"), read_image(images / "rgba.png")
    np.testing.assert_array_equal(rgba.alpha, source.alpha)  # restoration keeps alpha as it is
    assert read_image(out / "deep_restored.png").bit_depth == 16
    # The same as the Python engine on the same image.
    net = sr.load_model(model)
    expected = sr.upscale_image(net, read_image(images / "colour.png"))
    got = read_image(out / "colour_restored.png").pixels
    assert got.shape == expected.pixels.shape == (20, 30, 3)
    assert np.abs(got - expected.pixels).max() <= 0.5 / 255 + 1e-6


def test_gray_model_refuses_colour_images_file_by_file(tmp_path, images, capsys):
    model = tiny_restorer(tmp_path / "gray.pth", in_chans=1)
    out = tmp_path / "out"
    code = main(
        ["restore", str(images / "colour.png"), str(images / "gray.png"), "-o", str(out), "-m", str(model)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert _outputs(out) == ["gray_restored.png"]
    line = next(line for line in err.splitlines() if "colour.png" in line)
    assert line.startswith("sr: error: ") and "grayscale model" in line
    with pytest.raises(ValueError, match="colour image given to a grayscale model"):
        sr.upscale_image(sr.load_model(model), read_image(images / "colour.png"))


def test_each_command_refuses_the_other_kind_of_model(tmp_path, images, capsys, pan_weights):
    restorer = tiny_restorer(tmp_path / "restorer.pth")
    out = tmp_path / "out"
    assert main(["upscale", str(images / "colour.png"), "-o", str(out), "-m", str(restorer)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scale-1 restoration model" in err[0] and "sr restore" in err[0]
    assert (
        main(
            ["restore", str(images / "colour.png"), "-o", str(out), "-m", str(pan_weights / "PANx4_DF2K.pth")]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x4 super-resolution model" in err[0] and "sr upscale" in err[0]
    assert main(["restore", str(images / "colour.png"), "-o", str(out)]) == 2
    assert "--task" in capsys.readouterr().err
    assert not out.exists()


def test_onnx_runtime_restores_like_pytorch(tmp_path, images, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("SR_MODELS_DIR", str(tmp_path / "cache"))
    for channels, name in ((3, "colour.png"), (1, "gray.png")):
        model = tiny_restorer(tmp_path / f"r{channels}.pth", in_chans=channels)
        torch_out, onnx_out = tmp_path / f"torch{channels}.png", tmp_path / f"onnx{channels}.png"
        assert main(["restore", str(images / name), "-o", str(torch_out), "-m", str(model)]) == 0
        assert (
            main(["restore", str(images / name), "-o", str(onnx_out), "-m", str(model), "--backend", "onnx"])
            == 0
        )
        a, b = read_image(torch_out).pixels, read_image(onnx_out).pixels
        assert a.shape == b.shape and a.shape[2] == channels
        assert np.abs(a - b).max() <= 1 / 255 + 1e-6


def test_settings_the_weights_cannot_tell_come_from_metadata(tmp_path):
    # Window 4 with img_range 255: the rule (255 only for window 7) would say 1.0, the metadata wins.
    path = tiny_restorer(
        tmp_path / "m.safetensors", img_range=255.0, settings={"img_range": 255.0, "scale": 1}
    )
    net = sr.load_model(path)
    assert net.params["img_range"] == 255.0 and net.scale == 1 and net.task == "restore"
    plain = tiny_restorer(tmp_path / "plain.pth", window=7)
    assert sr.load_model(plain).params["img_range"] == 255.0  # the stated rule: JPEG models' window


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (with one redirect), and its base URL; stopped afterwards."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path.startswith("/moved/"):
                self.send_response(302)
                self.send_header("Location", self.path.replace("/moved/", "/", 1))
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _entry(name: str, url: str, **settings) -> zoo.ZooEntry:
    filename = url.rsplit("/", 1)[-1]
    return zoo.ZooEntry(name=name, family="SwinIR", scale=1, filename=filename, description="test",
                        urls=(url,), task="denoise", settings=settings)


def test_zoo_file_without_published_hash_is_trusted_on_first_use(tmp_path, http_folder, monkeypatch, capsys):
    folder, base = http_folder
    monkeypatch.setenv("SR_MODELS_DIR", str(tmp_path / "cache"))
    tiny_restorer(folder / "tiny_dn.pth", in_chans=1)
    entry = _entry("Tiny-DN", f"{base}/moved/tiny_dn.pth", in_chans=1, window_size=4, img_range=1.0)
    monkeypatch.setitem(zoo.ZOO, "tiny-dn", entry)
    net = sr.load_model("Tiny-DN")
    assert (net.family, net.scale, net.in_channels) == ("SwinIR", 1, 1)
    note = capsys.readouterr().err
    assert "trusted on first use" in note and "Tiny-DN" in note
    cached = tmp_path / "cache" / "tiny_dn.pth"
    record = cached.with_name("tiny_dn.pth.sha256")
    assert record.read_text().split()[0] == zoo.sha256_of(cached)
    # Later uses need no server and must match the recorded hash; a changed file is fetched again.
    (folder / "tiny_dn.pth").unlink()
    assert sr.load_model("Tiny-DN").in_channels == 1 and "trusted" not in capsys.readouterr().err
    cached.write_bytes(cached.read_bytes() + b"tampered")
    with pytest.raises(ModelLoadError, match="Tiny-DN: cannot download"):
        sr.load_model("Tiny-DN")


def test_zoo_file_that_is_not_what_its_entry_says_is_refused(tmp_path, http_folder, monkeypatch):
    folder, base = http_folder
    monkeypatch.setenv("SR_MODELS_DIR", str(tmp_path / "cache"))
    tiny_restorer(folder / "tiny_colour.pth", in_chans=3)
    monkeypatch.setitem(zoo.ZOO, "tiny-gray", _entry("Tiny-Gray", f"{base}/tiny_colour.pth", in_chans=1))
    with pytest.raises(ModelLoadError, match=r"not the zoo's Tiny-Gray: in_chans 3 \(expected 1\)"):
        sr.load_model("Tiny-Gray")
    assert not (tmp_path / "cache" / "tiny_colour.pth.sha256").exists()
    assert not (tmp_path / "cache" / "tiny_colour.pth").exists()  # dropped, so a retry downloads again


def test_official_restoration_models_are_in_the_zoo():
    entries = [e for e in zoo.ZOO.values() if e.family == "SwinIR" and e.scale == 1]
    assert len(entries) == 14
    names = {e.name for e in entries}
    assert {f"SwinIR-grayDN-s{s}" for s in (15, 25, 50)} <= names
    assert {f"SwinIR-colorJPEG-q{q}" for q in (10, 20, 30, 40)} <= names
    for e in entries:
        assert e.urls == (f"https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/{e.filename}",)
        jpeg = e.task == "jpeg"
        assert e.settings["window_size"] == (7 if jpeg else 8)
        assert e.settings["img_range"] == (255.0 if jpeg else 1.0)
        assert e.settings["in_chans"] == (1 if "gray" in e.name else 3)


def test_models_lists_bundled_and_zoo_restoration_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "denoise    RCAN x1 colour denoising" in out and "jpeg       RCAN x1 colour JPEG" in out
    line = next(line for line in out.splitlines() if "SwinIR-colorJPEG-q10" in line)
    assert "JPEG artifact removal x1, Apache-2.0" in line


def test_export_writes_a_gray_scale_1_model(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    model = tiny_restorer(tmp_path / "gray.pth", in_chans=1)
    out = tmp_path / "gray.onnx"
    assert main(["export", "-m", str(model), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "exported SwinIR x1 (gray)" in text and "max abs diff" in text
    from sr.onnx.runtime import load_onnx_file

    net = load_onnx_file(out)
    assert (net.scale, net.in_channels) == (1, 1)
