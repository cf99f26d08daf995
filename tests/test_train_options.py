"""Training options: BasicSR keys, official-style files, overrides and one-line errors naming the key."""

from pathlib import Path

import pytest

from sr.cli import main
from sr.loading import ModelLoadError, network_params
from sr.options import OptionsError, TrainOptions, apply_override, load_train_options

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OPTIONS = sorted((ROOT / "options" / "train").rglob("*.yml"))
# The bundled models' files train on ../shared/data/train as they were trained here.
BUNDLED = {
    "train_PAN_x4_default",
    "train_PAN_x4_realworld",
    "train_RCAN_denoise_colour_blind",
    "train_RCAN_denoise_colour_blind_finetune",
    "train_RCAN_jpeg_colour_blind",
    "train_RCAN_jpeg_colour_blind_finetune",
    "train_RCAN_jpeg_colour_blind_finetune2",
}


def test_every_family_has_train_options():
    families = {p.parent.name for p in TRAIN_OPTIONS}
    assert families == {
        "PAN", "RCAN", "HAN", "SwinIR", "HAT", "SRFormer", "DAT", "CAMixerSR", "DRCT", "CFSR", "A2N",
        "DLGSANet", "Histoformer", "HOGformer", "RRDBNet",
    }


@pytest.mark.parametrize("path", TRAIN_OPTIONS, ids=lambda p: p.stem)
def test_train_options_parse_and_build(path):
    import archs

    opt = load_train_options(path)
    assert isinstance(opt, TrainOptions)
    family, params = network_params(opt.network_g.type, opt.network_g.args)
    assert params.setdefault("scale", opt.scale) == opt.scale  # as the trainer fills it
    model = family.build(**params)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert family is archs.get_family(opt.network_g.type)
    train = opt.datasets["train"]
    assert train.gt_size % opt.scale == 0
    if path.stem not in BUNDLED:
        roots = train.dataroot_gt if isinstance(train.dataroot_gt, list) else [train.dataroot_gt]
        assert all(r.startswith("datasets/") for r in roots), "BasicSR convention: data under datasets/"


def test_official_names_translate():
    family, params = network_params("SwinIR", {"upscale": 2, "img_size": 48, "window_size": 8})
    assert params == {"scale": 2, "window_size": 8}
    with pytest.raises(ModelLoadError, match="network_g.windowsize: SwinIR has no such argument"):
        network_params("SwinIR", {"windowsize": 8})


def _write(tmp_path, text):
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return path


MINIMAL = """
name: t
scale: 4
network_g: {type: PAN, nb: 2}
datasets:
  train: {name: x, type: BicubicHRDataset, dataroot_gt: some/where, gt_size: 64}
train:
  optim_g: {type: Adam, lr: 2e-4}
  total_iter: !!float 5e3
  pixel_opt: {type: L1Loss}
logger: {print_freq: 10, save_checkpoint_freq: !!float 1e3}
"""


def test_basicsr_number_spellings(tmp_path):
    opt = load_train_options(_write(tmp_path, MINIMAL))
    assert opt.train.total_iter == 5000 and isinstance(opt.train.total_iter, int)
    assert opt.train.optim_g.lr == 2e-4  # PyYAML reads 2e-4 as a string
    assert opt.logger.save_checkpoint_freq == 1000


def test_mistyped_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("total_iter", "totl_iter"))
    with pytest.raises(OptionsError) as info:
        load_train_options(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "train.totl_iter: unknown option" in message


def test_wrong_type_names_expected_type(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("gt_size: 64", "gt_size: big"))
    with pytest.raises(OptionsError, match=r"datasets.train.gt_size: expected int, got str 'big'"):
        load_train_options(path)


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("io_backend: {type: lmdb}", "datasets.train.io_backend.type: 'lmdb' is not supported"),
        ("color: y", "datasets.train.color: 'y' is not supported"),
        ("mean: [0.5, 0.5, 0.5]", "datasets.train.mean: input normalisation is not supported"),
    ],
)
def test_unimplemented_basicsr_values_are_refused(tmp_path, setting, key):
    """Accepted keys whose other values would change the data are refused by name, never ignored."""
    path = _write(tmp_path, MINIMAL.replace("gt_size: 64}", f"gt_size: 64, {setting}}}"))
    with pytest.raises(OptionsError) as info:
        load_train_options(path)
    assert key in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_force_yml_overrides(tmp_path):
    path = _write(tmp_path, MINIMAL)
    opt = load_train_options(path, ["train:total_iter=7", "datasets:train:gt_size=32", "network_g:nf=8"])
    assert opt.train.total_iter == 7 and opt.datasets["train"].gt_size == 32
    assert opt.network_g.args["nf"] == 8
    data = {"a": 1}
    with pytest.raises(OptionsError, match="is not a mapping"):
        apply_override(data, "a:b=2", path)
    with pytest.raises(OptionsError, match="expected key:sub=value"):
        apply_override(data, "novalue", path)


def test_cli_reports_mistyped_key_in_one_line(tmp_path, capsys):
    path = _write(tmp_path, MINIMAL.replace("print_freq", "print_frq"))
    assert main(["train", "-opt", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "logger.print_frq: unknown option" in err and str(path) in err


def test_missing_dataset_folder_reported_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, MINIMAL)
    assert main(["train", "-opt", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "dataroot_gt folder some/where not found" in err and err.count("\n") == 0
    assert not (tmp_path / "experiments").exists()


def test_bad_cli_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--bogus"])
    assert info.value.code == 2
    assert main(["train"]) == 2
