"""Videos through `sr upscale` / `sr restore`: clips made here with PyAV (nothing downloaded), checked for
frame count, timestamps (variable frame rate included), bit-identical audio, frames equal to the image
engine's, rotation metadata, exact resume after an interruption, and one-line errors for bad files."""

from __future__ import annotations

import struct
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import sr
from sr import video
from sr.cli import main
from sr.imageio import Image, to_uint8
from sr.upscale import upscale_image

av = pytest.importorskip("av", reason="PyAV is the video extra; CI installs it")

RATE = Fraction(24)
# Variable frame rate: frames on a 1/24 s grid with gaps (pts in ticks of 1/24 s).
PTS = [0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 14, 15, 16, 17, 20, 21, 22]


def make_clip(path: Path, *, audio: bool = True, size=(40, 32)) -> Path:
    """A small H.264 clip: moving colour bands, a tone in AAC, timestamps with gaps."""
    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 24)
        sound = out.add_stream("aac", rate=22050) if audio else None
        yy, xx = np.mgrid[0:height, 0:width]
        for i, pts in enumerate(PTS):
            rgb = np.stack([(xx * 6 + i * 9) % 256, (yy * 7 + 40) % 256, ((xx + yy) * 4 + i * 13) % 256], -1)
            frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 24)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if sound is not None:
            t = np.arange(int(22050 * 0.9)) / 22050
            samples = (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None]
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 22050, 0
            for packet in sound.encode(chunk):
                out.mux(packet)
            for packet in sound.encode(None):
                out.mux(packet)
    return path


def decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


def first_audio_time(path: Path) -> float:
    with av.open(str(path)) as container:
        packet = next(p for p in container.demux(container.streams.audio[0]) if p.size)
        return float(packet.pts * packet.time_base)


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def net():
    return sr.load_model()  # the bundled PAN x4


@pytest.fixture
def clip(tmp_path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


def engine(net, frame: np.ndarray) -> np.ndarray:
    return to_uint8(upscale_image(net, Image(frame.astype(np.float32) / 255)).pixels)


def test_lossless_upscale_keeps_frames_timestamps_and_audio(clip, tmp_path, net, monkeypatch):
    monkeypatch.setattr(video, "SEGMENT_FRAMES", 6)  # three segments joined
    out = tmp_path / "clip_x4.mkv"
    assert main(["upscale", str(clip), "-o", str(out), "--codec", "ffv1", "--pix-fmt", "bgr0"]) == 0
    frames_in, times_in = decoded(clip)
    frames_out, times_out = decoded(out)
    assert len(frames_out) == len(frames_in) == len(PTS)
    # Matroska stores milliseconds and no negative times: the AAC priming packet (at -46 ms in the MP4)
    # moves everything later by the same amount, so frame spacing and audio-video sync are what must hold.
    shift = times_out[0] - times_in[0]
    assert np.allclose(np.subtract(times_out, shift), times_in, atol=1e-3)
    assert first_audio_time(out) - times_out[0] == pytest.approx(
        first_audio_time(clip) - times_in[0], abs=1e-3
    )
    assert np.allclose(times_in, [p / 24 for p in PTS])
    assert audio_packets(out) == audio_packets(clip)
    for source, result in zip(frames_in, frames_out, strict=True):
        assert result.shape == (source.shape[0] * 4, source.shape[1] * 4, 3)
        assert np.abs(result.astype(int) - engine(net, source)).max() <= 1
    assert not list(tmp_path.glob(".*"))  # no segment folder or temporary file left


def test_h264_in_mp4_keeps_exact_timestamps(clip, tmp_path):
    out = tmp_path / "clip_x2.mp4"
    assert main(["upscale", str(clip), "-o", str(out), "--outscale", "2", "--crf", "18"]) == 0
    frames, times = decoded(out)
    assert times == pytest.approx([p / 24 for p in PTS], abs=1e-9)
    assert frames[0].shape == (64, 80, 3)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
    assert audio_packets(out) == audio_packets(clip)


def test_interrupted_run_resumes_to_the_same_frames(clip, tmp_path, net, monkeypatch):
    monkeypatch.setattr(video, "SEGMENT_FRAMES", 5)
    settings = video.VideoSettings(codec="ffv1", pix_fmt="bgr0")

    def transform(image):
        return upscale_image(net, image)

    whole = tmp_path / "whole.mkv"
    video.process_video(clip, whole, transform, settings)
    calls = []

    def interrupted(image):
        if len(calls) == 12:
            raise KeyboardInterrupt
        calls.append(1)
        return transform(image)

    resumed = tmp_path / "resumed.mkv"
    with pytest.raises(KeyboardInterrupt):
        video.process_video(clip, resumed, interrupted, settings)
    assert not resumed.exists()  # nothing under the output's name
    parts = tmp_path / ".resumed.mkv.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["segment00000.nut", "segment00001.nut"]
    calls.clear()
    report = video.process_video(
        clip,
        resumed,
        lambda image: calls.append(1) or transform(image),
        video.VideoSettings(codec="ffv1", pix_fmt="bgr0", resume=True),
    )
    assert len(calls) == len(PTS) - 10 and report.frames == len(PTS)  # the two finished segments kept
    (first, times_a), (second, times_b) = decoded(whole), decoded(resumed)
    assert times_a == times_b and all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not parts.exists()


def subtitle_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        return [(bytes(p), float(p.pts * p.time_base)) for p in container.demux(stream) if p.size]


def test_subtitles_pass_through_unchanged(tmp_path):
    source = tmp_path / "film.mkv"
    lines = [
        (b"Dialogue: 0,0,0,Default,,0,0,0,,first line", 0),
        (b"Dialogue: 0,0,0,Default,,0,0,0,,second", 400),
    ]
    with av.open(str(source), "w") as out:
        picture = out.add_stream("libx264", rate=RATE)
        picture.width, picture.height, picture.pix_fmt = 32, 24, "yuv420p"
        text = out.add_stream("ass")
        text.time_base = text.codec_context.time_base = Fraction(1, 1000)
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            for packet in picture.encode(frame):
                out.mux(packet)
        for packet in picture.encode(None):
            out.mux(packet)
        for data, when in lines:
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.duration = text, when, when, 300
            packet.time_base = Fraction(1, 1000)
            out.mux(packet)
    out = tmp_path / "film_x4.mkv"
    assert main(["upscale", str(source), "-o", str(out)]) == 0
    assert subtitle_packets(out) == [(data, when / 1000) for data, when in lines]
    assert len(decoded(out)[0]) == 12


def rotate_90(path: Path) -> Path:
    """The clip with the QuickTime display matrix of a portrait phone video (rotate 90° clockwise)."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd") - 4
    assert data[box + 8] == 0  # version 0: the matrix sits 48 bytes into the box
    data[box + 48 : box + 84] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    rotated = path.with_name("rotated.mp4")
    rotated.write_bytes(bytes(data))
    return rotated


def test_rotation_metadata_is_applied(tmp_path, net):
    source = rotate_90(make_clip(tmp_path / "plain.mp4", audio=False))
    with av.open(str(source)) as container:
        assert next(container.decode(video=0)).rotation == -90
    out = tmp_path / "upright.mkv"
    assert main(["upscale", str(source), "-o", str(out), "--codec", "ffv1", "--pix-fmt", "bgr0"]) == 0
    frames, _ = decoded(out)
    plain, _ = decoded(tmp_path / "plain.mp4")
    assert frames[0].shape == (160, 128, 3)  # 40 x 32 shown upright as 32 wide, 40 high, x4
    assert np.abs(frames[0].astype(int) - engine(net, np.rot90(plain[0], -1))).max() <= 1


def test_restore_takes_videos_too(clip, tmp_path):
    from tests.test_restore import tiny_restorer

    model = tiny_restorer(tmp_path / "restorer.pth")
    out = tmp_path / "clean.mp4"
    assert main(["restore", str(clip), "-o", str(out), "-m", str(model)]) == 0
    frames, times = decoded(out)
    assert len(frames) == len(PTS) and frames[0].shape == (32, 40, 3)


def test_bad_videos_are_one_line_and_the_batch_goes_on(clip, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(clip.read_bytes())
    (folder / "notes.mp4").write_text("not a video at all")
    with av.open(str(folder / "sound.m4v"), "w", format="mp4") as out:  # audio only
        stream = out.add_stream("aac", rate=22050)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 22050, 0
        for packet in [*stream.encode(chunk), *stream.encode(None)]:
            out.mux(packet)
    data = clip.read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) // 2])  # breaks halfway
    out = tmp_path / "out"
    assert main(["upscale", str(folder), "-o", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sr: error:")]
    assert len(errors) == 3
    assert any("notes.mp4: not a readable video" in e for e in errors)
    assert any("sound.m4v: no video stream" in e for e in errors)
    assert any("cut.mp4" in e for e in errors)
    assert sorted(p.name for p in out.iterdir()) == ["good_x4.mp4"]  # nothing half-written


def test_without_pyav_a_video_is_one_line(clip, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "av", None)
    assert main(["upscale", str(clip), "-o", str(tmp_path / "x.mp4")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sr: error:")]
    assert errors == [f"sr: error: {clip}: video needs PyAV: pip install 'sr[video]'"]
