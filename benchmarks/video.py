"""Video throughput: frames per second of `sr upscale clip.mp4` (decode, engine, encode, join) against the
engine alone on the same decoded frames, in one process, interleaved.

A synthetic H.264 clip (moving gradients and noise, 320x180 at 24 fps, made here with PyAV) is upscaled by the
bundled PAN x4 to 1280x720. Each round times the whole video path (`sr.video.process_video`, H.264 CRF 18) and
then the engine on the same frames already decoded; the medians of the rounds are printed with their ratio
(the share of time that is video I/O) and the load average.

    python -m benchmarks.video [--frames 48] [--rounds 3] [--threads 2] [--codec h264]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

import sr
from sr.imageio import Image
from sr.upscale import upscale_image
from sr.video import VideoSettings, process_video


def make_clip(path: Path, frames: int, size: tuple[int, int] = (320, 180)) -> None:
    width, height = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb = np.stack([(xx + 3 * i) % 256, (yy * 2 + i) % 256, (xx + yy + 5 * i) % 256], -1)
            rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def decode(path: Path) -> list[Image]:
    with av.open(str(path)) as container:
        return [
            Image(pixels=f.to_ndarray(format="rgb24").astype(np.float32) / 255)
            for f in container.decode(video=0)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--codec", default="h264")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = sr.load_model()  # the bundled PAN x4
    settings = VideoSettings(codec=args.codec, crf=18)
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.frames)
        frames = decode(clip)
        upscale_image(net, frames[0])  # warm-up
        video_s, engine_s, load = [], [], [os.getloadavg()[0]]
        for round_ in range(args.rounds):
            start = time.perf_counter()
            report = process_video(
                clip, Path(folder) / f"out{round_}.mp4", lambda im: upscale_image(net, im), settings
            )
            video_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for frame in frames:
                upscale_image(net, frame)
            engine_s.append(time.perf_counter() - start)
            load.append(os.getloadavg()[0])
    video_fps = report.frames / statistics.median(video_s)
    engine_fps = len(frames) / statistics.median(engine_s)
    print(
        f"PAN x4, {report.frames} frames 320x180 -> {report.size[0]}x{report.size[1]}, {args.codec} CRF 18, "
        f"{args.threads} thread(s), torch {torch.__version__}, PyAV {av.__version__}"
    )
    for name, fps, rounds in (
        ("sr upscale clip.mp4", video_fps, video_s),
        ("engine alone", engine_fps, engine_s),
    ):
        print(f"  {name:20}: {fps:6.2f} frames/s  (rounds {', '.join(f'{s:.1f}' for s in rounds)} s)")
    print(f"  video / engine      : {video_fps / engine_fps:6.3f}")
    print(f"  load average (1 min): {', '.join(f'{x:.2f}' for x in load)}")


if __name__ == "__main__":
    main()
