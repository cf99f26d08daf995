"""The bundled restoration models (trained here, shipped in the package) against published figures: colour
denoising on CBSD68 at sigma 25 against CBM3D's published score, JPEG artifact removal on Classic5 against
the JPEG input of FBCNN's table, and gray or 8-bit inputs, which a colour-blind model must also handle."""

from __future__ import annotations

import pytest

import sr
from sr.loading import BUNDLED, WEIGHTS_DIR
from sr.tasks import JPEG, Denoise, find_set
from sr.tasks import evaluate_restoration as evaluate

# CBSD68, sigma 25, PSNR on RGB: CBM3D 30.71, DnCNN 31.24 (SwinIR paper, Table 4: colour denoising).
CBM3D_CBSD68_SIGMA25 = 30.71
# Classic5, quality 10, the JPEG input: 27.82 dB (FBCNN, Table 1).
JPEG_CLASSIC5_Q10 = 27.82


@pytest.fixture(scope="module")
def restoration_sets(shared_dir):
    return shared_dir / "data" / "restoration"


def test_bundled_models_are_small_colour_scale_1_rcan():
    for name in ("denoise", "jpeg"):
        path = WEIGHTS_DIR / BUNDLED[name]
        assert path.is_file() and path.stat().st_size < 4 * 2**20
        net = sr.load_model(name)
        assert (net.family, net.scale, net.in_channels, net.task) == ("RCAN", 1, 3, "restore")


@pytest.mark.slow
def test_denoise_matches_cbm3d_on_cbsd68_sigma_25(restoration_sets):
    net = sr.load_model("denoise")
    result = evaluate(net, find_set("CBSD68", restoration_sets), Denoise(25))
    # The noisy input: 20·log10(255/25) = 20.17 dB before rounding for scoring clips the extremes (20.54).
    assert 20.17 < result.mean("degraded")["psnr"] < 20.7
    assert result.mean("restored")["psnr"] >= CBM3D_CBSD68_SIGMA25


def test_denoise_on_8_bit_gray_photos(restoration_sets):
    net = sr.load_model("denoise")  # a colour model: gray images go through it as three equal channels
    gray = evaluate(net, find_set("Set12", restoration_sets), Denoise(25, quantize=True))
    assert gray.mean("restored")["psnr"] > gray.mean("degraded")["psnr"] + 8


def test_jpeg_gains_at_low_qualities(restoration_sets):
    net = sr.load_model("jpeg")
    classic5 = find_set("Classic5", restoration_sets)
    low = evaluate(net, classic5, JPEG(10))
    assert low.mean("degraded")["psnr"] == pytest.approx(JPEG_CLASSIC5_Q10, abs=0.05)
    assert low.mean("restored")["psnr"] >= low.mean("degraded")["psnr"] + 1.2  # the bar (+1.207)
    assert low.mean("restored")["psnrb"] >= low.mean("degraded")["psnrb"] + 2
    assert low.mean("restored")["ssim"] > low.mean("degraded")["ssim"]


def test_jpeg_no_worse_than_its_input_at_quality_90(restoration_sets):
    """At q90 the network alone smooths barbara's stripes (39.25 against the input's 39.37); held to the
    file's quantisation intervals, as `sr restore --task jpeg` and `sr test` do, it gains."""
    net = sr.load_model("jpeg")
    high = evaluate(net, find_set("Classic5", restoration_sets), JPEG(90))
    assert high.mean("restored")["psnr"] >= high.mean("degraded")["psnr"] + 0.2
    assert all(s.restored["psnr"] >= s.degraded["psnr"] - 0.5 for s in high.scores)

