"""Checkpoint reading: unwrapping order, prefixes, safetensors, and refusal of unsafe or broken files."""

import os
import pickle
import zipfile

import pytest
import torch
from safetensors.torch import save_file

from sr.checkpoint import CheckpointError, read_state_dict


def test_ema_weights_win_and_prefixes_are_stripped(tmp_path):
    ema, raw = torch.ones(2), torch.zeros(2)
    path = tmp_path / "net_g_1000.pth"
    torch.save({"params": {"module.conv.weight": raw}, "params_ema": {"module.netG.conv.weight": ema}}, path)
    state = read_state_dict(path)
    assert list(state) == ["conv.weight"]
    assert torch.equal(state["conv.weight"], ema)
    assert torch.equal(read_state_dict(path, key="params")["conv.weight"], raw)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net", "params-ema", "model_state_dict"])
def test_common_wrappers_are_unwrapped(tmp_path, wrapper):
    path = tmp_path / "w.ckpt"
    torch.save({wrapper: {"a.weight": torch.ones(1)}, "epoch": 3}, path)
    assert list(read_state_dict(path)) == ["a.weight"]


def test_non_tensor_entries_are_dropped(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"a.weight": torch.ones(1), "iteration": 7, "note": "x"}, path)
    assert list(read_state_dict(path)) == ["a.weight"]


def test_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"module.b.bias": torch.arange(3.0)}, path)
    assert torch.equal(read_state_dict(path)["b.bias"], torch.arange(3.0))


def test_legacy_pickle_checkpoint(pan_weights):
    state = read_state_dict(pan_weights / "PANx4_DF2K.pth")
    assert len(state) == 146
    assert sum(t.numel() for t in state.values()) == 272_419


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zipped):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    if zipped:
        torch.save({"conv.weight": torch.ones(1), "x": _Payload(marker)}, path)
        assert zipfile.is_zipfile(path)
    else:
        path.write_bytes(pickle.dumps({"x": _Payload(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: .*unsafe"):
        read_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty file"),
        (b"\x89PNG\r\n\x1a\nnot a checkpoint", "not a PyTorch checkpoint"),
        (b"PK\x03\x04broken zip", "not a readable PyTorch checkpoint"),
    ],
)
def test_broken_files_give_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        read_state_dict(path)
    assert str(error.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(error.value)


def test_missing_file_directory_and_empty_dict(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="not a file"):
        read_state_dict(tmp_path)
    torch.save({"epoch": 1}, tmp_path / "e.pth")
    with pytest.raises(CheckpointError, match="contains no weight tensors"):
        read_state_dict(tmp_path / "e.pth")
    save = tmp_path / "bad.safetensors"
    save.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_state_dict(save)


def test_requested_key_missing(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"params": {"a": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="has no 'params_ema' entry"):
        read_state_dict(path, key="params_ema")
