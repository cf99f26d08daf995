"""Video files through the image engine: PyAV decodes (FFmpeg inside its wheel), every frame goes through
the same `upscale_image` as a still image, frames are encoded with the input's timestamps, and audio and
subtitle packets are copied unchanged.

Frames are written in segments (`SEGMENT_FRAMES` each, in a `.<name>.parts/` folder beside the output,
each segment file complete or absent), then joined without re-encoding into the output, which appears under
its name only once whole. An interrupted run leaves its finished segments; `resume=True` keeps them and
goes on from the first one missing. Memory stays bounded: frames and packets are streamed, never gathered.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"})
CODECS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1", "prores": "prores_ks", "vp9": "libvpx-vp9"}
# The pixel format each codec writes unless asked: the input's where the codec takes it, else its usual one.
DEFAULT_PIX_FMT = {"prores_ks": "yuv422p10le"}
SEGMENT_FRAMES = 48
# Segment containers that keep the exact timestamps: QuickTime for the codecs that reorder frames (it keeps
# their negative decoding times, where NUT would shift the whole stream), NUT for the others.
SEGMENT_FORMAT = {"libx264": "mov", "libx265": "mov", "prores_ks": "mov", "ffv1": "nut", "libvpx-vp9": "nut"}
QUIET = {"libx265": {"x265-params": "log-level=error"}}


class VideoError(Exception):
    """A video that cannot be read or written; `str()` is one line, "<path>: <problem>"."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {' '.join(problem.split())}")


@dataclass
class VideoSettings:
    codec: str = "h264"  # a key of CODECS
    crf: int | None = None  # quality for h264/h265/vp9 (lower is better); the encoder's default if None
    pix_fmt: str | None = None  # output pixel format; by default the input's (yuv420p in, yuv420p out)
    resume: bool = False


@dataclass
class VideoReport:
    frames: int
    seconds: float
    size: tuple[int, int]  # output width, height


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError as missing:
        raise ImportError("video needs PyAV: pip install 'sr[video]'", name=missing.name) from None
    return av


def process_video(
    source: Path,
    target: Path,
    transform: Callable,
    settings: VideoSettings,
    *,
    progress: Callable[[int, int | None], None] | None = None,
) -> VideoReport:
    """Run every frame of `source` through `transform` (an `sr.imageio.Image` → Image function: the engine
    and any final resize) and write `target` with the same timestamps, audio and subtitles."""
    av = _av()
    parts = target.with_name(f".{target.name}.parts")
    if parts.exists() and not settings.resume:
        shutil.rmtree(parts)
    with _open_input(av, source) as container:
        video = _video_stream(container, source)
        encoder = _encoder(av, settings, video, source)
        parts.mkdir(parents=True, exist_ok=True)
        frames = 0
        size = None
        try:
            for index, chunk in enumerate(_segments(container, video)):
                segment = parts / f"segment{index:05d}.{encoder['format']}"
                if segment.is_file():
                    frames += sum(1 for _ in chunk)  # finished by an earlier run: decode past it
                    size = size or _segment_size(av, segment)
                    if progress:
                        progress(frames, video.frames or None)
                    continue
                count, size = _write_segment(av, chunk, segment, transform, encoder, video)
                frames += count
                if progress:
                    progress(frames, video.frames or None)
        except av.error.FFmpegError as error:
            shutil.rmtree(parts)  # a broken file: nothing to resume
            raise VideoError(source, f"the video stream breaks at frame {frames + 1} ({error})") from None
        if frames == 0:
            shutil.rmtree(parts)
            raise VideoError(source, "the video stream holds no frames")
        seconds = float(video.duration * video.time_base) if video.duration else 0.0
    try:
        _join(av, source, sorted(parts.glob(f"segment*.{encoder['format']}")), target)
    finally:
        shutil.rmtree(parts)
    return VideoReport(frames, seconds, size)


def _open_input(av, source: Path):
    try:
        return av.open(str(source))
    except av.error.FFmpegError as error:
        raise VideoError(source, f"not a readable video ({error})") from None


def _video_stream(container, source: Path):
    if not container.streams.video:
        raise VideoError(source, "no video stream")
    video = container.streams.video[0]
    if video.codec_context is None or video.codec_context.name in (None, "none"):
        raise VideoError(source, "the video codec is not supported by this FFmpeg build")
    video.thread_type = "AUTO"
    return video


def _encoder(av, settings: VideoSettings, video, source: Path) -> dict:
    codec = CODECS.get(settings.codec)
    if codec is None:
        raise VideoError(source, f"unknown codec {settings.codec!r} (known: {', '.join(CODECS)})")
    if codec not in av.codecs_available:
        raise VideoError(source, f"this FFmpeg build has no {codec} encoder")
    pix_fmt = settings.pix_fmt or DEFAULT_PIX_FMT.get(codec) or video.codec_context.pix_fmt or "yuv420p"
    options = dict(QUIET.get(codec, {}))
    if settings.crf is not None:
        options["crf"] = str(settings.crf)
        if codec == "libvpx-vp9":
            options["b"] = "0"  # constant quality
    return {"codec": codec, "pix_fmt": pix_fmt, "options": options, "format": SEGMENT_FORMAT[codec]}


def _segments(container, video) -> Iterator[Iterator]:
    """The decoded frames in consecutive groups of SEGMENT_FRAMES (each group to be consumed in order)."""
    decoded = container.decode(video)
    while True:
        chunk = itertools.islice(decoded, SEGMENT_FRAMES)
        first = next(chunk, None)
        if first is None:
            return
        yield itertools.chain([first], chunk)


def _pixels(frame) -> tuple[np.ndarray, int]:
    """An upright H x W x 3 float32 RGB array in [0, 1] and its bit depth (16 for sources above 8 bits)."""
    deep = any(c.bits > 8 for c in frame.format.components)
    array = frame.to_ndarray(format="rgb48le" if deep else "rgb24")
    turns = (getattr(frame, "rotation", 0) or 0) // 90 % 4  # counter-clockwise display rotation
    if turns:
        array = np.rot90(array, turns)
    scale = np.float32(65535 if deep else 255)
    return np.ascontiguousarray(array).astype(np.float32) / scale, 16 if deep else 8


def _write_segment(av, frames, segment: Path, transform, encoder: dict, video):
    """Encode one group of frames into `segment`, which exists only once complete."""
    temporary = segment.with_name(segment.name + ".tmp")
    try:
        count, size = _encode_segment(av, frames, temporary, transform, encoder, video)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    temporary.replace(segment)
    return count, size


def _encode_segment(av, frames, temporary: Path, transform, encoder: dict, video):
    from sr.imageio import Image

    count, size = 0, None
    with av.open(str(temporary), "w", format=encoder["format"]) as out:
        stream = None
        for frame in frames:
            pixels, depth = _pixels(frame)
            result = transform(Image(pixels=pixels, bit_depth=depth))
            rgb = np.clip(result.pixels, 0, 1)
            if rgb.shape[2] == 1:
                rgb = np.repeat(rgb, 3, axis=2)
            if depth == 16:
                picture = av.VideoFrame.from_ndarray(
                    np.round(rgb * 65535).astype(np.uint16), format="rgb48le"
                )
            else:
                picture = av.VideoFrame.from_ndarray(np.round(rgb * 255).astype(np.uint8), format="rgb24")
            if stream is None:
                size = (picture.width, picture.height)
                rate = video.average_rate or Fraction(25)
                stream = out.add_stream(encoder["codec"], rate=rate, options=encoder["options"])
                stream.width, stream.height, stream.pix_fmt = (
                    picture.width,
                    picture.height,
                    encoder["pix_fmt"],
                )
                stream.time_base = video.time_base
                stream.codec_context.time_base = video.time_base
            picture.pts, picture.time_base = frame.pts, video.time_base
            for packet in stream.encode(picture.reformat(format=encoder["pix_fmt"])):
                out.mux(packet)
            count += 1
        for packet in stream.encode(None):
            out.mux(packet)
    return count, size


def _segment_size(av, segment: Path) -> tuple[int, int]:
    with av.open(str(segment)) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def _join(av, source: Path, segments: list[Path], target: Path) -> None:
    """The segments' video packets and the source's other streams, in time order, into `target` (atomic)."""
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    inputs = [av.open(str(path)) for path in segments]
    original = av.open(str(source))
    try:
        _mux(av, original, inputs, temporary, target)
        temporary.replace(target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, av.error.FFmpegError | ValueError):
            raise VideoError(target, f"cannot write this container with that codec ({error})") from None
        raise
    finally:
        for container in (*inputs, original):
            container.close()


def _mux(av, original, inputs: list, temporary: Path, target: Path) -> None:
    """Video packets of every segment and the audio/subtitle packets of the source, merged by time."""
    with av.open(str(temporary), "w", format=_format_for(target)) as out:
        video = out.add_stream_from_template(inputs[0].streams.video[0])
        copied = {}
        for stream in original.streams:
            if stream.type in ("audio", "subtitle"):
                try:
                    copied[stream.index] = out.add_stream_from_template(stream)
                except (ValueError, av.error.FFmpegError):
                    pass  # a stream this container cannot hold is left out
        sources = [_packets(c.demux(c.streams.video[0]), video) for c in inputs]
        others = [s for s in original.streams if s.index in copied]
        if others:
            sources.append(_packets(original.demux(*others), None, copied))
        for _, _, packet, stream in heapq.merge(*sources, key=lambda item: (item[0], item[1])):
            packet.stream = stream
            out.mux(packet)


def _packets(demuxed, stream, mapping: dict | None = None) -> Iterator:
    """(time in seconds, order, packet, output stream) of real packets, in file order."""
    for order, packet in enumerate(demuxed):
        if packet.size == 0 or packet.dts is None and packet.pts is None:
            continue  # the demuxer's flush packets
        when = packet.dts if packet.dts is not None else packet.pts
        out = stream if mapping is None else mapping[packet.stream.index]
        yield float(when * packet.time_base), order, packet, out


def _format_for(target: Path) -> str | None:
    return {
        ".mkv": "matroska",
        ".webm": "webm",
        ".mov": "mov",
        ".m4v": "mp4",
        ".mp4": "mp4",
        ".avi": "avi",
    }.get(target.suffix.lower())
