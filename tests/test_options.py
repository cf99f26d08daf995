"""Options files: BasicSR test format parsed into typed objects; every mistake is a one-line error."""

from pathlib import Path

import pytest

from sr.options import OptionsError, load_test_options

OPTIONS = Path(__file__).resolve().parents[1] / "options" / "test"


@pytest.mark.parametrize("path", sorted(OPTIONS.rglob("*.yml")), ids=lambda p: p.name)
def test_shipped_test_options_parse(path):
    opt = load_test_options(path)
    assert opt.network_g.type and opt.scale in (1, 2, 3, 4, 8)
    if opt.scale == 1:  # restoration: clean sets degraded on the fly, or degraded/clean pairs; whole images
        assert all(
            d.dataroot_gt and (d.type == "DegradedHRDataset" or d.dataroot_lq) for d in opt.datasets.values()
        )
        assert {m.crop_border for m in opt.val.metrics.values()} == {0}
        return
    assert all(d.dataroot_gt and d.dataroot_lq for d in opt.datasets.values())
    assert {m.crop_border for m in opt.val.metrics.values()} == {opt.scale}


BASE = """name: t
scale: 4
network_g: {type: PAN, nf: 40}
datasets:
  test_1: {name: Set5, dataroot_gt: a, dataroot_lq: b}
"""


def _write(tmp_path, text):
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return path


def test_minimal_options(tmp_path):
    opt = load_test_options(_write(tmp_path, BASE))
    assert opt.network_g.args == {"nf": 40}
    assert opt.datasets["test_1"].filename_tmpl == "{}"
    assert opt.path.strict_load_g is True


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("scael: 4\n", "scael: unknown option"),
        (
            "val: {metrics: {psnr: {type: calculate_psnr, crop_boarder: 4}}}\n",
            "val.metrics.psnr.crop_boarder: unknown",
        ),
        ("path: {strict_load_g: yes please}\n", "path.strict_load_g: expected bool, got str"),
        ("manual_seed: 1.5\n", "manual_seed: expected int, got float 1.5"),
        ("val: {save_img: 1}\n", "val.save_img: expected bool, got int 1"),
    ],
)
def test_mistakes_name_the_key_and_the_file(tmp_path, extra, message):
    path = _write(tmp_path, BASE + extra)
    with pytest.raises(OptionsError) as error:
        load_test_options(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_required_and_bad_yaml(tmp_path):
    with pytest.raises(OptionsError, match="opt.yml: scale: required option missing"):
        load_test_options(_write(tmp_path, BASE.replace("scale: 4\n", "")))
    with pytest.raises(OptionsError, match=r"opt.yml: invalid YAML at line 2"):
        load_test_options(_write(tmp_path, "name: t\n  scale: [4\n"))
    with pytest.raises(OptionsError, match="expected a mapping of options"):
        load_test_options(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(OptionsError, match="cannot read"):
        load_test_options(tmp_path / "absent.yml")
