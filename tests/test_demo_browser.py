"""The web demo end to end in a real browser: Playwright driving Debian's Chromium, headless.

Outside CI the tests skip when Chromium is not installed; `.ci/run` installs it, so in CI they always run.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from playwright.sync_api import Page, expect, sync_playwright

from tests.helpers.demo_server import demo_server

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is not installed (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory, shared_dir: Path):
    with demo_server(tmp_path_factory.mktemp("browser_demo")) as (address, _):
        yield address


@pytest.fixture
def page(tmp_path: Path):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def upload_and_run(page: Page, url: str, path: Path) -> None:
    page.goto(url)
    page.locator("#input input[type=file]").set_input_files(str(path))
    page.locator("#upscale").click()


def test_upscale_in_the_browser(page: Page, url: str, shared_dir: Path, tmp_path: Path):
    lr = shared_dir / "data" / "benchmarks" / "Set5" / "LR_bicubic" / "X4" / "baby.png"  # 128×128
    upload_and_run(page, url, lr)
    expect(page.locator("#info")).to_contain_text("128×128 → 512×512", timeout=120_000)
    shown = page.locator("#compare img")
    expect(shown).to_have_count(2)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    sizes = shown.evaluate_all("images => images.map(i => [i.naturalWidth, i.naturalHeight])")
    assert sizes == [[512, 512], [512, 512]]
    link = page.locator("#result a").first
    expect(link).to_have_attribute("href", re.compile(r"baby_x4\.png$"))
    page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
    assert (tmp_path / "demo.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.txt", "Invalid file type: notes.txt"),  # refused by the page before upload
        ("notes.png", "notes.png: not an image"),  # named like an image: refused by the server
    ],
)
def test_non_image_upload_shows_the_error(page: Page, url: str, tmp_path: Path, name: str, message: str):
    notes = tmp_path / name
    notes.write_text("these are notes, not a picture")
    upload_and_run(page, url, notes)
    expect(page.get_by_text(message)).to_be_visible(timeout=60_000)
    page.screenshot(path=str(tmp_path / "error.png"))

def test_denoise_in_the_browser(page: Page, url: str, shared_dir: Path, tmp_path: Path):
    noisy = tmp_path / "noisy.png"
    butterfly = shared_dir / "data" / "benchmarks" / "Set5" / "HR" / "butterfly.png"
    clean = PILImage.open(butterfly).crop((0, 0, 96, 80))
    pixels = np.asarray(clean, dtype=np.float64) + np.random.default_rng(0).normal(0, 20, (80, 96, 3))
    PILImage.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)).save(noisy)
    page.goto(url)
    page.get_by_label("Denoise").check()
    expect(page.locator("#restore")).to_be_visible(timeout=60_000)
    expect(page.locator("#upscale")).to_be_hidden()
    page.locator("#input input[type=file]").set_input_files(str(noisy))
    page.locator("#restore").click()
    expect(page.locator("#info")).to_contain_text("96×80, denoise", timeout=120_000)
    link = page.locator("#result a").first
    expect(link).to_have_attribute("href", re.compile(r"noisy_denoise\.png$"))
