"""DAT: parity with spandrel's copy of the official code through the detecting loader, official buffers and
shift masks, presets, detection, attention routed through kernels, option files."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import archs
import sr
from archs import MissingHyperParameter, dat
from archs.dat import DAT, SpatialBranch, is_shifted
from kernels import shift_window_mask
from tests.helpers.foreign import foreign_state_dicts
from tests.oracles.torchvision_stub import install as install_torchvision_stub

# Small configs covering split sizes (square and 1:2, 1:4), embed dims, one-block groups, heads, expansion,
# qkv_bias, both residual convs and upsamplers, scales 2/3/4; shifted blocks appear in even and odd groups.
CASES = [
    dict(embed_dim=32, split_size=[2, 4], depth=[2, 2], num_heads=[2, 4], expansion_factor=2.0,
         resi_connection="1conv", upsampler="pixelshuffle", scale=2),
    dict(embed_dim=40, split_size=[4, 8], depth=[3, 2], num_heads=[2, 2], expansion_factor=4.0,
         resi_connection="3conv", upsampler="pixelshuffledirect", scale=4),
    dict(embed_dim=32, split_size=[4, 8], depth=[1, 3], num_heads=[4, 4], expansion_factor=1.5,
         qkv_bias=False, resi_connection="3conv", upsampler="pixelshuffle", scale=3),
    dict(embed_dim=48, split_size=[4, 4], depth=[4], num_heads=[4], expansion_factor=2.0,
         resi_connection="1conv", upsampler="pixelshuffle", scale=4),
    dict(embed_dim=32, split_size=[2, 8], depth=[2, 1], num_heads=[2, 2], expansion_factor=2.0,
         resi_connection="1conv", upsampler="pixelshuffledirect", scale=3),
]


def case_id(config: dict) -> str:
    s0, s1 = config["split_size"]
    return f"e{config['embed_dim']}-s{s0}x{s1}-d{config['depth']}-x{config['scale']}-{config['upsampler']}"


@pytest.fixture(scope="module")
def official():
    """spandrel's copy of the official `dat_arch.py` module."""
    install_torchvision_stub()
    pytest.importorskip("spandrel", reason="spandrel (--no-deps) is the DAT oracle; CI installs it")
    return importlib.import_module("spandrel.architectures.DAT.__arch.DAT")


def official_model(official, config: dict, seed: int = 0) -> torch.nn.Module:
    """The official DAT for one of our configs, trained at img_size 16 (so shifted blocks store masks), with
    every parameter and BatchNorm statistic perturbed."""
    kwargs = {k: v for k, v in config.items() if k != "scale"}
    model = official.DAT(img_size=16, upscale=config["scale"], **kwargs).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return model


def image(seed: int, n: int, h: int, w: int) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def our_model(config: dict) -> DAT:
    torch.manual_seed(3)
    return DAT(**config).eval()


@pytest.mark.parametrize("config", CASES, ids=case_id)
def test_loader_matches_official(official, config, tmp_path):
    reference = official_model(official, config)
    state_dict = reference.state_dict()
    assert any(key.endswith("attn_mask_0") for key in state_dict)  # dropped on load, rebuilt per size
    path = tmp_path / "dat_random.pth"
    torch.save({"params": state_dict}, path)
    loaded = sr.load_model(path)
    assert loaded.family == "DAT" and loaded.scale == config["scale"] and loaded.multiple_of == 32
    assert loaded.params == {"in_chans": 3, "qkv_bias": True, **config}
    for x in (image(1, 2, 19, 27), image(2, 1, 7, 5)):  # not multiples of the windows; batch of two
        with torch.no_grad():
            expected, got = reference(x), loaded.model(x)
        assert got.shape == (x.shape[0], 3, x.shape[2] * config["scale"], x.shape[3] * config["scale"])
        assert (got - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("config", CASES[:3], ids=case_id)
def test_shifted_blocks_follow_the_official_rule(official, config):
    reference, ours = official_model(official, config), our_model(config)
    for theirs, mine in zip(reference.layers, ours.layers, strict=True):
        for i, (their_block, my_block) in enumerate(zip(theirs.blocks, mine.blocks, strict=True)):
            if i % 2 == 0:
                assert (their_block.attn.attn_mask_0 is not None) == (my_block.attn.shifts[0] is not None)
    assert [b for b in range(0, 13, 2) if is_shifted(0, b)] == [2, 6, 10]
    assert [b for b in range(0, 13, 2) if is_shifted(1, b)] == [0, 4, 8, 12]


@pytest.mark.parametrize("split", [(8, 32), (8, 16), (2, 4), (4, 4)])
def test_position_buffers_equal_official(official, split):
    for idx, window in enumerate((split, split[::-1])):
        theirs = official.Spatial_Attention(16, idx=idx, split_size=list(split), num_heads=2)
        ours = SpatialBranch(16, 2, window)
        for name in ("rpe_biases", "relative_position_index"):
            mine, their = getattr(ours, name), getattr(theirs, name)
            assert mine.dtype == their.dtype and torch.equal(mine, their)
        assert ours.scale == theirs.scale


@pytest.mark.parametrize(("split", "h", "w"), [((8, 32), 32, 64), ((8, 32), 96, 32), ((8, 16), 16, 48),
                                               ((2, 4), 8, 12)])
def test_shift_masks_equal_official(official, split, h, w):
    s0, s1 = split
    block = official.Adaptive_Spatial_Attention(16, 2, reso=max(split), split_size=list(split),
                                                shift_size=[s0 // 2, s1 // 2], b_idx=2)
    masks = block.calculate_mask(h, w)
    assert torch.equal(shift_window_mask(h, w, (s0, s1), (s0 // 2, s1 // 2)), masks[0])
    assert torch.equal(shift_window_mask(h, w, (s1, s0), (s1 // 2, s0 // 2)), masks[1])


# Parameter counts of spandrel's build of each preset (equal to ours), and the paper's rounded figures.
PRESET_COUNTS = {("DAT", 4): 14_802_051, ("DAT", 2): 14_654_339, ("DAT-S", 4): 11_212_131,
                 ("DAT-2", 4): 11_212_131, ("DAT-light", 4): 572_766, ("DAT-light", 2): 553_290}
PAPER = {("DAT", 4): "14.80M", ("DAT-S", 4): "11.21M", ("DAT-2", 4): "11.21M", ("DAT-light", 4): "573K",
         ("DAT-light", 2): "553K"}


@pytest.mark.parametrize(("name", "scale"), list(PRESET_COUNTS), ids=lambda v: str(v))
def test_presets_build_with_the_published_size(name, scale):
    with torch.device("meta"):
        model = DAT(**dat.FAMILY.presets[name], scale=scale)
    count = sum(p.numel() for p in model.parameters())
    assert count == PRESET_COUNTS[name, scale]
    if (name, scale) in PAPER:
        paper = PAPER[name, scale]
        assert (f"{count / 1e6:.2f}M" if paper.endswith("M") else f"{count / 1e3:.0f}K") == paper


def test_light_preset_matches_spandrel_build(official):
    preset = dict(dat.FAMILY.presets["DAT-light"])
    theirs = official.DAT(upscale=4, img_size=64, **preset)
    ours = DAT(**preset, scale=4)
    their_state = {k: v for k, v in theirs.state_dict().items() if not dat.ignored_keys(k)}
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in their_state.items()}
    assert dat.params_from_state_dict(theirs.state_dict(), None) == {"in_chans": 3, "qkv_bias": True,
                                                                     **preset, "scale": 4}


def test_detection(official):
    for config in CASES[:2]:
        state_dict = official_model(official, config).state_dict()
        assert [f.name for f in archs.FAMILIES if f.detect(state_dict)] == ["DAT"]
        assert archs.detect_family(state_dict).name == "DAT"
    for name, state_dict in foreign_state_dicts("DAT").items():
        assert not dat.detect(state_dict), name


def test_scale_hint_must_agree():
    state_dict = DAT(**CASES[0]).state_dict()
    assert dat.params_from_state_dict(state_dict, 2)["scale"] == 2
    with pytest.raises(MissingHyperParameter, match="x2, not x3"):
        dat.params_from_state_dict(state_dict, 3)


def test_unreadable_settings_are_clear_errors():
    state_dict = DAT(**CASES[1]).state_dict()
    broken = dict(state_dict, **{"layers.0.blocks.0.attn.attns.0.rpe_biases": torch.zeros(9, 2)})
    with pytest.raises(MissingHyperParameter, match="split size"):
        dat.params_from_state_dict(broken, None)
    broken = dict(state_dict, **{"upsample.0.weight": torch.zeros(15, 40, 3, 3)})
    with pytest.raises(MissingHyperParameter, match="upsample.0.weight has 15 outputs"):
        dat.params_from_state_dict(broken, None)
    state_dict = DAT(**dict(CASES[0], embed_dim=60)).state_dict()  # int(60 * 123/60) == 122
    broken = dict(state_dict, **{"layers.0.blocks.0.ffn.fc1.weight": torch.zeros(123, 60)})
    with pytest.raises(MissingHyperParameter, match="expansion_factor"):
        dat.params_from_state_dict(broken, None)
    state_dict = DAT(**CASES[0]).state_dict()
    broken = dict(state_dict, **{"upsample.0.weight": torch.zeros(128, 64, 3, 3)})
    with pytest.raises(MissingHyperParameter, match="scale"):
        dat.params_from_state_dict(broken, None)


def test_one_block_groups_take_heads_from_the_branches():
    params = dat.params_from_state_dict(DAT(**dict(CASES[2], depth=[1, 1])).state_dict(), None)
    assert params["depth"] == [1, 1] and params["num_heads"] == [4, 4]


def test_all_attention_goes_through_kernels(monkeypatch):
    config = CASES[0]  # groups of 2 blocks: one spatial (two window calls) and one channel block each
    model, x = our_model(config), image(3, 1, 11, 13)
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return window_attention(*args, **kwargs)

    window_attention = dat.window_attention
    monkeypatch.setattr(dat, "window_attention", counting)
    with torch.no_grad():
        model(x)
    assert len(calls) == 3 * len(config["depth"])

    def forbidden(*args, **kwargs):
        raise AssertionError("softmax outside kernels.window_attention")

    monkeypatch.setattr(dat, "window_attention", window_attention)
    monkeypatch.setenv("SR_ATTENTION_BACKEND", "sdpa")  # the SDPA backend itself calls no softmax
    for owner in (torch, torch.Tensor, F):
        monkeypatch.setattr(owner, "softmax", forbidden)
    with torch.no_grad():
        model(x)


def test_backends_agree(monkeypatch):
    model, x = our_model(CASES[1]), image(4, 2, 10, 13)
    outputs = []
    for backend in ("reference", "sdpa"):
        monkeypatch.setenv("SR_ATTENTION_BACKEND", backend)
        with torch.no_grad():
            outputs.append(model(x))
    assert (outputs[0] - outputs[1]).abs().max().item() <= 1e-5


def test_bfloat16_runs_close_to_float32():
    model, x = our_model(CASES[0]), image(5, 1, 12, 9)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)
        pure = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    for got in (mixed, pure):
        assert torch.isfinite(got).all() and (got.float() - expected).abs().max().item() < 0.1


OPTION_FILES = sorted((Path(__file__).parents[1] / "options/test/DAT").glob("*.yml"))
VARIANTS = {"DAT": "DAT", "DAT_S": "DAT-S", "DAT_2": "DAT-2", "DAT_light": "DAT-light"}


def test_option_files_cover_the_released_models():
    expected = sorted(f"test_{stem}_x{s}.yml" for stem in VARIANTS for s in (2, 3, 4))
    assert [path.name for path in OPTION_FILES] == expected


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda path: path.name)
def test_option_file_describes_the_official_network(path):
    options = yaml.safe_load(path.read_text())
    stem = path.stem.removeprefix("test_").rsplit("_x", 1)[0]
    network = dict(options["network_g"])
    assert network.pop("type") == "DAT"
    expected = dict(dat.FAMILY.presets[VARIANTS[stem]], scale=options["scale"], in_chans=3, img_range=1.0)
    if expected["upsampler"] == "pixelshuffle":  # the official files leave the default out
        del expected["upsampler"]
    assert network == expected
    inspect.signature(DAT).bind(**network)
    assert options["path"]["pretrain_network_g"] == f"experiments/pretrained_models/DAT/{path.stem[5:]}.pth"
    assert options["path"]["param_key_g"] == "params"
    for metric in options["val"]["metrics"].values():
        assert metric["crop_border"] == options["scale"] and metric["test_y_channel"] is True


@pytest.mark.parametrize(
    ("variant", "split"),
    [
        ({"upsampler": "pixelshuffle", "unshuffle_mod": True, "scale": 2}, [2, 4]),
        ({"upsampler": "pixelshuffledirect", "unshuffle_mod": True, "scale": 1}, [4, 8]),
        ({"upsampler": "pixelshuffle", "scale": 2, "embed_dim": 24, "resi_connection": "3conv"}, [4, 16]),
    ],
    ids=["unshuffle-x2", "unshuffle-x1-direct", "light-body-pixelshuffle-head-split4x16"],
)
def test_community_variants(official, tmp_path, variant, split):
    """traiNNer-redux DATs: the PixelUnshuffle head of `unshuffle_mod` (traiNNer/archs/dat_arch.py: the
    official network with conv_first = [PixelUnshuffle(4/scale), conv] and an x4 upsampler, rebuilt here on
    spandrel's official class), a DAT-light body with the pixelshuffle head, another split size; detected
    with the constructor's settings and equal outputs; saved as safetensors."""
    config = dict(
        {
            "embed_dim": 32,
            "split_size": split,
            "depth": [2],
            "num_heads": [2],
            "expansion_factor": 2.0,
            "resi_connection": "1conv",
        },
        **variant,
    )
    unshuffle = 4 // config["scale"] if config.get("unshuffle_mod") else 1
    base = {k: v for k, v in config.items() if k != "unshuffle_mod"}
    reference = official_model(official, dict(base, scale=4 if unshuffle > 1 else base["scale"]))
    if unshuffle > 1:  # traiNNer's head, then the official body and an x4 upsampler
        torch.manual_seed(7)
        reference.conv_first = torch.nn.Sequential(
            torch.nn.PixelUnshuffle(unshuffle),
            torch.nn.Conv2d(3 * unshuffle**2, config["embed_dim"], 3, 1, 1),
        )
    path = tmp_path / "community.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    loaded = sr.load_model(path)
    assert loaded.params == {"in_chans": 3, "qkv_bias": True, **config} and loaded.scale == config["scale"]
    x = image(8, 1, 16, 24)  # multiples of the unshuffle factor, where traiNNer pads nothing
    with torch.no_grad():
        expected, got = reference(x), loaded.model(x)
    assert got.shape == expected.shape == (1, 3, 16 * config["scale"], 24 * config["scale"])
    assert (got - expected).abs().max().item() <= 1e-5
    assert loaded.model(image(9, 1, 13, 10)).shape == (1, 3, 13 * config["scale"], 10 * config["scale"])
