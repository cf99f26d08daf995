"""Loading by path or zoo name: detection, scale inference, strict loading and one-line errors."""

import hashlib
import shutil

import pytest
import torch

import archs
import sr
from sr import zoo
from sr.loading import ModelLoadError, load_configured_model, scale_from_filename
from tests.helpers.foreign import official_state_dicts, preset_state_dicts


@pytest.mark.parametrize(
    ("name", "scale"), [("PANx2_DF2K.pth", 2), ("PANx3_DF2K.pth", 3), ("PANx4_DF2K.pth", 4)]
)
def test_official_pan_checkpoints(pan_weights, name, scale):
    net = sr.load_model(pan_weights / name)
    assert (net.family, net.scale, net.multiple_of) == ("PAN", scale, 1)
    assert net.params == {"in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16, "scale": scale}
    assert not net.model.training
    params = sum(p.numel() for p in net.model.parameters())
    assert params == (272_419 if scale == 4 else 261_403)  # REFERENCE §1.4


def test_pan_x2_x3_ambiguity_needs_a_scale(pan_weights, tmp_path):
    anonymous = tmp_path / "pan.pth"
    shutil.copy(pan_weights / "PANx3_DF2K.pth", anonymous)
    with pytest.raises(ModelLoadError, match=r"pan\.pth: PAN x2 and x3 weights .* --scale"):
        sr.load_model(anonymous)
    assert sr.load_model(anonymous, scale=3).scale == 3
    with pytest.raises(ModelLoadError, match="x2 or x3, not x4"):
        sr.load_model(anonymous, scale=4)
    with pytest.raises(ModelLoadError, match="x4, not x2"):
        sr.load_model(pan_weights / "PANx4_DF2K.pth", scale=2)


def test_user_scale_beats_file_name(pan_weights, tmp_path):
    misnamed = tmp_path / "PANx2_copy.pth"
    shutil.copy(pan_weights / "PANx3_DF2K.pth", misnamed)
    assert sr.load_model(misnamed).scale == 2
    assert sr.load_model(misnamed, scale=3).scale == 3


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("PANx3_DF2K.pth", 3),
        ("4x-HAT-S_SR.pth", 4),
        ("RCAN_BIX2.pt", 2),
        ("HAT_SRx4_ImageNet-pretrain.pth", 4),
        ("001_classicalSR_DF2K_s64w8_SwinIR-M_x2.pth", 2),
        ("model.pth", None),
        ("x2_to_x4.pth", None),
    ],
)
def test_scale_from_filename(name, scale):
    assert scale_from_filename(name) == scale


def test_unknown_network_lists_families(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.ones(3, 3)}, path)
    with pytest.raises(ModelLoadError) as error:
        sr.load_model(path)
    message = str(error.value)
    assert message.startswith(f"{path}: weights match no known network (tried ")
    assert all(f.name in message for f in archs.FAMILIES)


def test_weights_that_do_not_fit(pan_weights, tmp_path):
    state = torch.load(pan_weights / "PANx4_DF2K.pth", weights_only=True)
    del state["trunk_conv.bias"]
    path = tmp_path / "broken_x4.pth"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"weights do not fit PAN: .*trunk_conv\.bias"):
        sr.load_model(path)


def test_configured_model_from_options(pan_weights):
    params = {"in_nc": 3, "out_nc": 3, "nf": 40, "unf": 24, "nb": 16, "scale": 3}
    net = load_configured_model("PAN", params, pan_weights / "PANx3_DF2K.pth")
    assert net.scale == 3
    with pytest.raises(ModelLoadError, match="weights do not fit PAN"):
        load_configured_model("PAN", {**params, "nb": 15}, pan_weights / "PANx3_DF2K.pth")
    with pytest.raises(ModelLoadError, match="unknown network family 'EDSR'"):
        load_configured_model("EDSR", params, pan_weights / "PANx3_DF2K.pth")


def test_zoo_download_verifies_and_caches(pan_weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SR_MODELS_DIR", str(cache))
    entry = zoo.lookup("pan-x4")
    source = (pan_weights / "PANx4_DF2K.pth").resolve()
    path = zoo.fetch(entry, urls=(source.as_uri(),))
    assert path == cache / "PANx4_DF2K.pth"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256
    # Cached: a second fetch does not touch the (now unreachable) URL.
    assert zoo.fetch(entry, urls=((tmp_path / "gone.pth").as_uri(),)) == path
    assert sr.load_model("PAN-x4").scale == 4


def test_zoo_rejects_a_corrupt_download_and_leaves_nothing(pan_weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SR_MODELS_DIR", str(cache))
    wrong = (pan_weights / "PANx2_DF2K.pth").resolve().as_uri()
    with pytest.raises(zoo.ZooError, match=r"PAN-x4: cannot download: .* has sha256 fcf8ed48656a"):
        zoo.fetch(zoo.lookup("PAN-x4"), urls=(wrong,))
    with pytest.raises(zoo.ZooError, match="cannot download"):
        zoo.fetch(zoo.lookup("PAN-x4"), urls=((tmp_path / "missing.pth").as_uri(),))
    assert list(cache.iterdir()) == []


def test_missing_path_that_is_no_model_name(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file, and not a model name"):
        sr.load_model(tmp_path / "nothing.pth")


def test_basicsr_style_missing_path_falls_back_to_the_zoo(pan_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_MODELS_DIR", str(pan_weights))
    net = sr.load_model(tmp_path / "experiments" / "pretrained_models" / "PANx3_DF2K.pth")
    assert (net.family, net.scale) == ("PAN", 3)


def test_detection_tells_every_family_apart():
    """Every preset of every family, and the official code's own models of the Swin-derived families, are
    detected as their family and by no other (RGT, which we do not have, by none)."""
    cases = {label: (family, sd) for label, (family, sd) in preset_state_dicts().items()}
    cases.update((f"{name} (official)", (name, sd)) for name, sd in official_state_dicts().items())
    assert {family for family, _ in cases.values()} >= {f.name for f in archs.FAMILIES}
    for label, (family, state_dict) in cases.items():
        found = [f.name for f in archs.FAMILIES if f.detect(state_dict)]
        assert found == ([] if family == "RGT" else [family]), label
