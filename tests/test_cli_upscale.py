"""`sr upscale` end to end: batches with bad files, atomic outputs, image modes and argument errors."""

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from sr.cli import main
from sr.imageio import read_image

RUN = [sys.executable, "-m", "sr"]


@pytest.fixture
def lr_file(shared_dir, tmp_path):
    """A small real LR image copied into the test folder (never write next to ../shared)."""
    image = PILImage.open(shared_dir / "data" / "benchmarks" / "Set5" / "LR_bicubic" / "X4" / "butterfly.png")
    path = tmp_path / "in" / "butterfly.png"
    path.parent.mkdir()
    image.crop((10, 10, 42, 34)).save(path)
    return path


@pytest.fixture
def pan(pan_weights):
    return str(pan_weights / "PANx4_DF2K.pth")


def _outputs(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_batch_with_bad_files_goes_on_and_fails(lr_file, pan, tmp_path, capsys):
    folder = lr_file.parent
    (folder / "truncated.png").write_bytes(lr_file.read_bytes()[:300])
    (folder / "notes.jpg").write_bytes(b"%PDF-1.4 not an image")
    (folder / "empty.webp").write_bytes(b"")
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    code = main(["upscale", str(folder), str(tmp_path / "missing.png"), "-o", str(out), "-m", pan])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert _outputs(out) == ["butterfly_x4.png"]
    for name, problem in [
        ("truncated.png", "truncated"),
        ("notes.jpg", "not an image"),
        ("empty.webp", "empty file"),
        ("dangling.png", "cannot read"),
        ("missing.png", "no such file"),
    ]:
        lines = [line for line in err if name in line]
        assert len(lines) == 1 and problem in lines[0], (name, err)
        assert lines[0].startswith("sr: error: ")
    assert read_image(out / "butterfly_x4.png").pixels.shape == (96, 128, 3)


def test_single_file_to_named_output_and_no_overwrite(lr_file, pan, tmp_path, capsys):
    target = tmp_path / "big.png"
    assert main(["upscale", str(lr_file), "-o", str(target), "-m", pan]) == 0
    first = target.read_bytes()
    assert main(["upscale", str(lr_file), "-o", str(target), "-m", pan, "--tile", "16"]) == 1
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == first
    assert (
        main(["upscale", str(lr_file), "-o", str(target), "-m", pan, "--overwrite", "--format", "png"]) == 0
    )


def test_default_output_is_beside_the_input(lr_file, pan):
    assert main(["upscale", str(lr_file), "-m", pan, "--suffix=-big"]) == 0
    assert (lr_file.parent / "butterfly-big.png").is_file()


def test_recursive_folder_is_mirrored_and_format_converted(lr_file, pan, tmp_path):
    sub = lr_file.parent / "sub"
    sub.mkdir()
    shutil.copy(lr_file, sub / "inner.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "upscale",
                str(lr_file.parent),
                "-r",
                "-o",
                str(out),
                "-m",
                pan,
                "--format",
                "jpg",
                "--suffix",
                "",
            ]
        )
        == 0
    )
    assert _outputs(out) == ["butterfly.jpg", "inner.jpg"]
    assert (out / "sub" / "inner.jpg").is_file()


def test_image_modes_round_trip(lr_file, pan, tmp_path):
    rgb = np.asarray(PILImage.open(lr_file))
    folder = tmp_path / "modes"
    folder.mkdir()
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1], dtype=np.uint8), (rgb.shape[0], 1))
    PILImage.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
    PILImage.fromarray(rgb[..., 1]).save(folder / "gray.png")
    PILImage.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "gray16.png")
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    PILImage.fromarray(rgb).save(folder / "rotated.jpg", exif=exif, quality=95)
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out), "-m", pan]) == 0
    h, w = rgb.shape[:2]
    with PILImage.open(out / "rgba_x4.png") as image:
        assert image.mode == "RGBA" and image.size == (4 * w, 4 * h)
        assert np.asarray(image)[..., 3][:, -8:].min() > 200
    with PILImage.open(out / "gray_x4.png") as image:
        assert image.mode == "L" and image.size == (4 * w, 4 * h)
    gray16 = read_image(out / "gray16_x4.png")
    assert gray16.bit_depth == 16 and gray16.pixels.shape == (4 * h, 4 * w, 1)
    with PILImage.open(out / "rotated_x4.jpg") as image:
        assert image.size == (4 * h, 4 * w)  # upright: width and height swapped by the EXIF rotation


def test_model_errors_are_one_line_and_nothing_is_written(lr_file, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"w": Payload()}))
    unknown = tmp_path / "unknown.pth"
    import torch

    torch.save({"encoder.weight": torch.ones(2)}, unknown)
    out = tmp_path / "out"
    for model, problem in [(evil, "refused"), (unknown, "match no known network")]:
        result = subprocess.run(
            [*RUN, "upscale", str(lr_file), "-o", str(out), "-m", str(model)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(model) in lines[0] and problem in lines[0], result.stderr
    assert not marker.exists()
    assert not out.exists()


def test_outscale_area_averages_the_models_result(lr_file, pan, tmp_path):
    """x2 from a x4 model is the x4 result averaged over 2x2 blocks (area resampling at an integer ratio)."""
    x4, x2 = tmp_path / "x4.png", tmp_path / "x2.png"
    assert main(["upscale", str(lr_file), "-m", pan, "-o", str(x4)]) == 0
    assert main(["upscale", str(lr_file), "-m", pan, "-o", str(x2), "--outscale", "2"]) == 0
    big, small = read_image(x4).pixels, read_image(x2).pixels
    blocks = big.reshape(small.shape[0], 2, small.shape[1], 2, 3).mean(axis=(1, 3))
    assert small.shape == (48, 64, 3) and np.abs(small - blocks).max() <= 1 / 255


def test_bf16_precision_stays_close_to_fp32(lr_file, pan, tmp_path, capsys):
    """`--dtype bf16` runs the network under bf16 autocast (on any CPU: emulated ones are told so); PAN's
    output stays within bf16's rounding of the fp32 one (53.9 dB apart on this crop, fp32 48 dB from bf16)."""
    from sr.metrics import psnr
    from sr.upscale import cpu_has_native_bf16

    fp32, bf16 = tmp_path / "fp32.png", tmp_path / "bf16.png"
    assert main(["upscale", str(lr_file), "-m", pan, "-o", str(fp32), "--dtype", "fp32"]) == 0
    assert main(["upscale", str(lr_file), "-m", pan, "-o", str(bf16), "--dtype", "bf16"]) == 0
    err = capsys.readouterr().err
    assert ("no native bf16" in err) != cpu_has_native_bf16()
    a, b = (np.asarray(PILImage.open(path)) for path in (fp32, bf16))
    assert 0 < np.abs(a.astype(int) - b).max() and psnr(a, b) > 45


def test_bf16_is_refused_for_onnx_models(lr_file, pan, tmp_path, capsys):
    args = ["--backend", "onnx", "--dtype", "bf16", "-o", str(tmp_path)]
    code = main(["upscale", str(lr_file), "-m", pan, *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("sr: error: --dtype bf16: applies to the PyTorch engine")
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--tile", "abc"], "invalid int value"),
        (["--dtype", "fp16"], "invalid choice"),
        (["--scale", "5"], "invalid choice"),
        (["--format", "gif"], "invalid choice"),
        (["--quality", "0"], "between 1 and 100"),
        (["--outscale", "8"], "--outscale 8: this model upscales x4, so 1 to 4 are possible"),
    ],
)
def test_bad_arguments(lr_file, pan, args, problem, capsys):
    with pytest.raises(SystemExit) as leave:
        code = main(["upscale", str(lr_file), "-m", pan, *args])
        raise SystemExit(code)
    assert leave.value.code == 2
    assert problem in capsys.readouterr().err


def test_help_and_module_entry_point():
    result = subprocess.run([*RUN, "upscale", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "examples:" in result.stdout and "--tile-overlap" in result.stdout


def test_import_sr_is_light():
    heavy = "('torch', 'cv2', 'onnx', 'gradio')"
    code = f"import sys, sr, sr.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"
