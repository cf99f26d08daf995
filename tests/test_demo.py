"""The web demo through its programmatic API (`gradio_client`), against `sr demo` running as its own process.

Results are checked against `sr upscale` on the same input and model; limits, bad input and a burst of
concurrent requests are checked for what a user would see: one-line messages, queue order, bounded memory.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image as PILImage

from sr.cli import main as sr_main
from sr.imageio import read_image
from tests.helpers.demo_server import demo_server, peak_rss_mib

MAX_PIXELS = 200 * 200
MAX_FILE = "300kb"


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_dir: Path):
    """(URL, process) of `sr demo` with small limits and a models folder holding the official PAN x2."""
    work = tmp_path_factory.mktemp("demo")
    (work / "offered").mkdir()
    (work / "offered" / "PANx2_DF2K.pth").symlink_to(shared_dir / "weights" / "PAN" / "PANx2_DF2K.pth")
    args = ("--models", str(work / "offered"), "--max-pixels", str(MAX_PIXELS), "--max-file-size", MAX_FILE)
    with demo_server(work, *args) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def lr_image(shared_dir: Path) -> Path:
    return shared_dir / "data" / "benchmarks" / "Set5" / "LR_bicubic" / "X4" / "butterfly.png"


def upscale(client: Client, path: Path, model="default", scale=4, tile="auto", backend="ONNX Runtime"):
    """The demo's outputs: (before, after) paths, the PNG to download, the info line."""
    return client.predict(handle_file(str(path)), model, scale, tile, backend, api_name="/upscale")


def cli_upscale(path: Path, out: Path, *args: str) -> np.ndarray:
    assert sr_main(["upscale", str(path), "-o", str(out), "--overwrite", *args]) == 0
    return read_image(out).pixels


@pytest.mark.parametrize("backend", ["ONNX Runtime", "PyTorch"])
def test_result_equals_sr_upscale(client, lr_image, tmp_path, backend):
    (before, after), png, info = upscale(client, lr_image, backend=backend)
    assert after == png and Path(png).suffix == ".png" and PILImage.open(png).format == "PNG"
    result = read_image(png).pixels
    expected = cli_upscale(lr_image, tmp_path / "cli.png")
    lr = read_image(lr_image).pixels
    assert result.shape == expected.shape == (lr.shape[0] * 4, lr.shape[1] * 4, 3)
    assert np.abs(result - expected).max() <= 1 / 255
    assert read_image(before).pixels.shape == result.shape
    assert f"on {backend}" in info and "64×64 → 256×256" in info


def test_output_scale_below_the_models(client, lr_image, tmp_path):
    _, png, info = upscale(client, lr_image, scale=2, tile="32", backend="PyTorch")
    expected = cli_upscale(lr_image, tmp_path / "cli.png", "--outscale", "2", "--tile", "32")
    assert np.abs(read_image(png).pixels - expected).max() <= 1 / 255
    assert expected.shape[:2] == (128, 128) and "(x2)" in info


def test_model_from_the_models_folder(client, lr_image, shared_dir, tmp_path):
    weights = shared_dir / "weights" / "PAN" / "PANx2_DF2K.pth"
    _, png, info = upscale(client, lr_image, model="PANx2_DF2K.pth", scale=2)
    expected = cli_upscale(lr_image, tmp_path / "cli.png", "-m", str(weights))
    assert np.abs(read_image(png).pixels - expected).max() <= 1 / 255
    assert "PAN x2" in info


def test_restore_equals_sr_restore(client, shared_dir, tmp_path):
    clean = read_image(shared_dir / "data" / "benchmarks" / "Set5" / "HR" / "butterfly.png").pixels[:96, :120]
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    path = tmp_path / "noisy.png"
    PILImage.fromarray(np.round(noisy * 255).astype(np.uint8)).save(path)
    (before, after), png, info = client.predict(
        handle_file(str(path)), "Denoise", "denoise", "auto", "PyTorch", api_name="/restore"
    )
    out = tmp_path / "cli.png"
    assert sr_main(["restore", str(path), "-o", str(out), "--task", "denoise"]) == 0
    result, expected = read_image(png).pixels, read_image(out).pixels
    assert result.shape == expected.shape == (96, 120, 3)
    assert np.abs(result - expected).max() <= 1 / 255
    assert np.array_equal(read_image(before).pixels, read_image(path).pixels)  # before: the input itself
    assert "120×96, denoise" in info and "RCAN colour" in info
    # JPEG files are held to their quantisation intervals there as here
    photo = tmp_path / "photo.jpg"
    PILImage.fromarray(np.round(clean * 255).astype(np.uint8)).save(photo, quality=70)
    _, png, _ = client.predict(
        handle_file(str(photo)), "Remove JPEG artifacts", "jpeg", "auto", "PyTorch", api_name="/restore"
    )
    for name, flags in (("jpeg.png", []), ("raw.png", ["--no-jpeg-constraint"])):
        assert sr_main(["restore", str(photo), "-o", str(tmp_path / name), "--task", "jpeg", *flags]) == 0
    demo, cli, raw = (read_image(p).pixels for p in (png, tmp_path / "jpeg.png", tmp_path / "raw.png"))
    assert np.abs(demo - cli).max() <= 1 / 255 < np.abs(demo - raw).max()
    # each task refuses the other kind of model, in one line
    with pytest.raises(AppError, match="is a restoration model: choose the Denoise or Remove JPEG"):
        upscale(client, path, model="denoise", scale=4)
    with pytest.raises(AppError, match="default is a x4 super-resolution model: choose the Upscale task"):
        client.predict(handle_file(str(path)), "Denoise", "default", "auto", "PyTorch", api_name="/restore")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"hello, not a picture", "notes.txt: not an image"),
        ("cut.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "cut.png: "),
    ],
)
def test_bad_file_gives_a_message_and_the_server_keeps_serving(
    client, lr_image, tmp_path, name, content, message
):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(AppError) as refused:
        upscale(client, bad)
    assert message in str(refused.value) and "Traceback" not in str(refused.value)
    assert "\n" not in str(refused.value).strip()
    _, png, _ = upscale(client, lr_image)
    assert read_image(png).pixels.shape == (256, 256, 3)


def test_too_many_pixels_refused(client, tmp_path):
    big = tmp_path / "wide.png"
    PILImage.new("RGB", (400, 120), "gray").save(big)  # 48000 px > 40000, a few hundred bytes
    message = r"wide\.png is 400×120 \(48,000 pixels\); this demo accepts images up to 40,000 pixels$"
    with pytest.raises(AppError, match=message):
        upscale(client, big)


def test_oversize_upload_refused(client, server, tmp_path):
    noisy = tmp_path / "noisy.bmp"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (190, 190, 3), np.uint8)).save(noisy)
    assert noisy.stat().st_size > 100_000
    large = tmp_path / "large.bmp"
    large.write_bytes(noisy.read_bytes() * 3)  # 325 kB, over the 300 kB limit
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        upscale(client, large)
    # the server refuses it too, whatever the client checks
    with open(large, "rb") as f:
        response = httpx.post(server[0] + "gradio_api/upload", files={"files": ("large.bmp", f)})
    assert response.status_code == 413 and "maximum allowed size" in response.text


def test_unknown_model_and_tile_refused(client, lr_image):
    with pytest.raises(AppError, match="not in the list of choices"):
        upscale(client, lr_image, model="no-such-model")
    with pytest.raises(AppError, match="tile 'huge': use auto, off or a side in pixels"):
        upscale(client, lr_image, tile="huge")


def test_ten_concurrent_requests_in_queue_order_with_bounded_memory(client, server, shared_dir):
    folder = shared_dir / "data" / "benchmarks" / "Set14" / "LR_bicubic" / "X4"
    images = sorted(folder.glob("*.png"))[:10]
    upscale(client, images[0])  # warm: model loaded, ONNX session made
    before = peak_rss_mib(server[1].pid)
    jobs = []
    for path in images:
        jobs.append(
            client.submit(handle_file(str(path)), "default", 4, "auto", "ONNX Runtime", api_name="/upscale")
        )
        while jobs[-1].status().code.name in ("STARTING", "JOINING_QUEUE"):  # in the queue before the next
            time.sleep(0.01)
    finished: list[int] = []
    deadline = time.monotonic() + 300
    while len(finished) < len(jobs) and time.monotonic() < deadline:
        finished += [i for i, job in enumerate(jobs) if job.done() and i not in finished]
        time.sleep(0.005)
    assert finished == list(range(len(jobs)))
    for path, job in zip(images, jobs, strict=True):
        _, png, _ = job.result()
        lr = PILImage.open(path).size
        assert PILImage.open(png).size == (lr[0] * 4, lr[1] * 4)
    peak = peak_rss_mib(server[1].pid)
    print(f"sr demo peak RSS: {before:.0f} MiB after one request, {peak:.0f} MiB after 10 more")
    assert peak < before + 400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "--port 0: must be between 1 and 65535"),
        (["--models", "/no/such/folder"], "--models /no/such/folder: no such folder"),
        (["--max-file-size", "lots"], "--max-file-size lots: use a size such as 25mb"),
    ],
)
def test_bad_demo_arguments(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "sr", "demo", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.strip() == f"sr: error: {message}"


def test_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "sr", "demo", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"sr: error: cannot serve on 127.0.0.1:{port}: the port is in use (choose another with --port)"
    )
