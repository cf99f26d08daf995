"""The Gradio app: upload an image, pick a task (upscale, denoise, remove JPEG artifacts) and a model, compare
before/after, download the lossless PNG.

Inference is `sr.upscale.upscale_image` on a model from `webui.catalog`, exactly what `sr upscale` and
`sr restore` run.
Every failure reaches the page (and API clients) as one line through `gr.Error`, never a stack trace.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
from PIL import Image as PILImage

from sr import zoo
from sr.imageio import Image, ImageError, read_image, write_image
from sr.jpeg_constraint import project_file
from sr.loading import DEFAULT_NAME, ModelLoadError
from sr.onnx.runtime import OrtModule
from sr.upscale import check_outscale, rescale, upscale_image
from webui.catalog import Engines, discover, label

log = logging.getLogger("sr.demo")

BACKENDS = {"ONNX Runtime": "onnx", "PyTorch": "torch"}
TASKS = {"Upscale": "sr", "Denoise": "denoise", "Remove JPEG artifacts": "jpeg"}
TILES = ["auto", "off", "128", "256", "512"]


@dataclass
class Limits:
    """What one request may ask for; the queue serves `concurrency` requests at once, holds `queue_size`."""

    max_pixels: int = 2_000_000
    max_file_size: str = "25mb"
    concurrency: int = 1
    queue_size: int = 16


def _passing_files_through(image: gr.Image) -> gr.Image:
    """`image` handing over the uploaded file untouched: `sr.imageio` decodes it (16-bit, alpha, EXIF) and
    names the problem when it is not an image, where Gradio's decoding fails with a bare error. (An instance
    override: subclassing a Gradio component makes Gradio write a .pyi stub beside this module.)"""
    decode = image.preprocess

    def preprocess(payload):
        return payload.path if payload is not None and payload.path else decode(payload)

    image.preprocess = preprocess
    return image


def parse_tile(tile: str | int | None) -> int | None:
    """The engine's tile argument for the UI's choice: 'auto' → None, 'off' → 0, else a side in LR pixels."""
    if tile in (None, "", "auto"):
        return None
    if tile == "off":
        return 0
    try:
        value = int(tile)
    except ValueError:
        raise gr.Error(f"tile {tile!r}: use auto, off or a side in pixels such as 256") from None
    if not 32 <= value <= 4096:
        raise gr.Error(f"tile {value}: must be between 32 and 4096 pixels (or auto, off)")
    return value


class Upscaler:
    """The request handler: one image through one model, results written as PNG into Gradio's cache."""

    def __init__(self, models_dir: Path | None, limits: Limits) -> None:
        self.models_dir = models_dir
        self.limits = limits
        self.engines = Engines()

    def models(self, task: str | None = None) -> dict[str, str]:
        return discover(self.models_dir, task)

    def source(self, model: str) -> str:
        """What `sr` loads `model` by, for a model this demo offers; anything else is refused."""
        catalog = self.models()
        if model not in catalog:
            raise gr.Error(f"model {model!r} is not offered here (choose one of: {', '.join(catalog)})")
        return catalog[model]

    def scales(self, model: str, backend: str, progress=gr.Progress(track_tqdm=True)) -> gr.Dropdown:  # noqa: B008
        """The output scale choices for `model`: its own scale, or smaller ones by area-averaging.

        The model is loaded into the engine cache here (a zoo model not yet downloaded is fetched, with its
        progress shown), so the request that follows finds it ready."""
        try:
            net, _ = self.engines.get(self.source(model), BACKENDS.get(backend, backend))
        except ModelLoadError as problem:
            raise gr.Error(f"model {model}: {problem}") from None
        return gr.Dropdown(choices=output_scales(net.scale), value=net.scale)

    def task_changed(self, task: str, backend: str):
        """The model list, scale choice and buttons for a task: its bundled model preselected."""
        models = list(self.models(TASKS.get(task, "sr")))
        upscaling = TASKS.get(task) == "sr"
        if upscaling and models:
            scales = self.scales(models[0], backend)
            outscale = gr.Dropdown(choices=scales.choices, value=scales.value, visible=True)
        else:
            outscale = gr.Dropdown(visible=upscaling)
        return (
            gr.Dropdown(choices=choices(models), value=models[0] if models else None),
            outscale,
            gr.Button(visible=upscaling),
            gr.Button(visible=not upscaling),
        )

    def __call__(
        self,
        path: str | None,
        model: str,
        outscale: int | None,
        tile: str,
        backend: str,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's way to show tqdm bars (downloads)
    ):
        """Upscale (the `/upscale` API)."""
        return self._guarded(
            path, lambda p, name: self._run(p, name, model, outscale, parse_tile(tile), backend)
        )

    def restore(
        self,
        path: str | None,
        task: str,
        model: str,
        tile: str,
        backend: str,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - Gradio's way to show tqdm bars (downloads)
    ):
        """Denoise or remove JPEG artifacts with a scale-1 model (the `/restore` API)."""
        if task not in TASKS or TASKS[task] == "sr":
            raise gr.Error(f"task {task!r}: choose Denoise or Remove JPEG artifacts")
        return self._guarded(
            path, lambda p, name: self._run(p, name, model, 1, parse_tile(tile), backend, task)
        )

    def _guarded(self, path: str | None, work):
        if not path:
            raise gr.Error("Upload an image first.")
        name = Path(path).name
        try:
            return work(Path(path), name)
        except gr.Error:
            raise
        except ImageError as problem:
            raise gr.Error(str(problem).replace(problem.path, name, 1)) from None
        except (ModelLoadError, ValueError) as problem:
            raise gr.Error(f"{name}: {' '.join(str(problem).split())}") from None
        except Exception as problem:  # noqa: BLE001 - the page gets one line, the log the traceback
            log.exception("processing %s failed", name)
            raise gr.Error(f"{name}: processing failed ({type(problem).__name__}: {problem})") from None

    def _run(self, path: Path, name: str, model: str, outscale, tile, backend: str, task: str | None = None):
        start = time.perf_counter()
        self._check_size(path, name)
        source = self.source(model)
        image = read_image(path)
        net, note = self.engines.get(source, BACKENDS.get(backend, backend))
        if task is None and net.scale == 1:
            raise gr.Error(
                f"{model} is a restoration model: choose the Denoise or Remove JPEG artifacts task"
            )
        if task is not None and net.scale != 1:
            raise gr.Error(f"{model} is a x{net.scale} super-resolution model: choose the Upscale task")
        outscale = int(outscale or net.scale)
        check_outscale(outscale, net.scale)
        ran = time.perf_counter()
        result = rescale(upscale_image(net, image, tile=tile), outscale, net.scale)
        if task is not None and TASKS[task] == "jpeg":  # as `sr restore --task jpeg`: the file's intervals
            result.pixels = project_file(result.pixels, image.pixels, path)
        ran = time.perf_counter() - ran
        folder = Path(tempfile.mkdtemp(dir=gr.utils.get_upload_folder(), prefix="sr-"))
        stem = Path(name).stem
        after = folder / (f"{stem}_x{outscale}.png" if task is None else f"{stem}_{TASKS[task]}.png")
        write_image(after, result)
        before = folder / f"{stem}_{'bicubic' if task is None else 'input'}.png"
        write_image(
            before, _resized(image, result.pixels.shape[1], result.pixels.shape[0]) if task is None else image
        )
        h, w = image.pixels.shape[:2]
        oh, ow = result.pixels.shape[:2]
        engine = "ONNX Runtime" if isinstance(net.model, OrtModule) else "PyTorch"
        done = f"{w}×{h} → {ow}×{oh} (x{outscale})" if task is None else f"{w}×{h}, {task.lower()}"
        kind = f"x{net.scale}" if task is None else ("gray" if net.in_channels == 1 else "colour")
        info = (
            f"**{name}**: {done} with {model} ({net.family} {kind}) on "
            f"{engine}: {ran:.2f} s inference, {time.perf_counter() - start:.2f} s in all"
        )
        if note:
            info += f"  \n{note}"
        entry = zoo.lookup(model)
        if entry is not None and entry.non_commercial:
            info += f"  \n{model} is published under {entry.licence}: non-commercial use only"
        return (str(before), str(after)), str(after), info

    def _check_size(self, path: Path, name: str) -> None:
        """Refuse images above the pixel limit from their header, before decoding them."""
        try:
            with PILImage.open(path) as im:
                w, h = im.size
        except (OSError, PILImage.DecompressionBombError):
            return  # not readable as an image: read_image names the problem
        if w * h > self.limits.max_pixels:
            raise gr.Error(
                f"{name} is {w}×{h} ({pixels(w * h)}); this demo accepts images up to "
                f"{pixels(self.limits.max_pixels)}"
            )


def choices(names: list[str]) -> list[tuple[str, str]]:
    """Dropdown choices: what the list shows (download size, licence) and the name a request carries."""
    return [(label(name), name) for name in names]


def output_scales(scale: int) -> list[int]:
    """The output scales a x`scale` model offers: from x2 (or its own, for x1) up to its own."""
    return list(range(2, scale + 1)) or [scale]


def pixels(count: int) -> str:
    """A pixel count as people read it: '2.0 MP', or '48,000 pixels' below a tenth of a megapixel."""
    return f"{count / 1e6:.1f} MP" if count >= 100_000 else f"{count:,} pixels"


def _resized(image: Image, width: int, height: int) -> Image:
    """The input enlarged by plain bicubic resizing: the 'before' side of the comparison."""
    enlarged = cv2.resize(image.pixels, (width, height), interpolation=cv2.INTER_CUBIC)
    return Image(pixels=np.clip(enlarged.reshape(height, width, -1), 0, 1), bit_depth=8)


def build(models_dir: Path | None = None, limits: Limits | None = None) -> gr.Blocks:
    """The demo as Gradio Blocks; `launch(demo, ...)` serves it."""
    limits = limits or Limits()
    upscaler = Upscaler(models_dir, limits)
    names = list(upscaler.models())  # all, so the API accepts any; the task narrows the page's list
    first_scale = upscaler.engines.get(DEFAULT_NAME, "torch")[0].scale
    with gr.Blocks(title="sr: super-resolution and restoration demo", delete_cache=(600, 3600)) as demo:
        gr.Markdown(
            "## sr: super-resolution and restoration\nUpload or paste an image, choose a task and a model, "
            f"and press the button. Images up to {pixels(limits.max_pixels)} and {limits.max_file_size}."
        )
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.Image(
                    label="Input image", type="filepath", sources=["upload", "clipboard"], elem_id="input"
                )
                source = _passing_files_through(upload)
                task = gr.Radio(list(TASKS), value="Upscale", label="Task", elem_id="task")
                model = gr.Dropdown(choices(names), value=DEFAULT_NAME, label="Model", elem_id="model")
                with gr.Row():
                    scales = output_scales(first_scale)
                    outscale = gr.Dropdown(scales, value=first_scale, label="Output scale")
                    tile = gr.Dropdown(TILES, value="auto", label="Tile (LR pixels)", allow_custom_value=True)
                backend = gr.Radio(list(BACKENDS), value="ONNX Runtime", label="Backend")
                button = gr.Button("Upscale", variant="primary", elem_id="upscale")
                restore = gr.Button("Restore", variant="primary", elem_id="restore", visible=False)
            with gr.Column(scale=2):
                compare = gr.ImageSlider(
                    label="Before (bicubic, or the input) / after",
                    type="filepath",
                    format="png",
                    elem_id="compare",
                )
                download = gr.File(label="Result (lossless PNG)", elem_id="result")
                info = gr.Markdown(elem_id="info")
        task.change(
            upscaler.task_changed,
            [task, backend],
            [model, outscale, button, restore],
            api_visibility="private",
        )
        model.change(upscaler.scales, [model, backend], outscale, api_visibility="private")
        button.click(
            upscaler,
            [source, model, outscale, tile, backend],
            [compare, download, info],
            api_name="upscale",
            concurrency_limit=limits.concurrency,
        )
        restore.click(
            upscaler.restore,
            [source, task, model, tile, backend],
            [compare, download, info],
            api_name="restore",
            concurrency_limit=limits.concurrency,
        )
    demo.queue(max_size=limits.queue_size, default_concurrency_limit=limits.concurrency)
    return demo


def launch(demo: gr.Blocks, *, host: str, port: int, share: bool, limits: Limits) -> str:
    """Start serving `demo` in the background; the local URL (and the public one with `share`)."""
    _, local, public = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=limits.max_file_size,
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
        footer_links=["api"],
    )
    return local + (f" and {public}" if public else "")
