"""The fused convolution ops (archs.fused_conv) against torch's separate ops, when they apply, and the CFSR,
DLGSANet and CAMixerSR inference paths built on them against those networks' plain (training) paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archs import blocks, cfsr, dlgsanet, fused_conv
from archs.camixer import CAMixerSR
from archs.cfsr import CFSR
from archs.dlgsanet import DLGSANet, SparseAttention
from archs.fused_conv import conv_gelu, conv_then, fusable

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _conv(cin: int, cout: int, k: int, groups: int = 1, layout=torch.contiguous_format) -> torch.nn.Conv2d:
    torch.manual_seed(1)
    return torch.nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups).to(memory_format=layout).eval()


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize(("cin", "cout", "k", "groups"), [(12, 20, 1, 1), (16, 16, 3, 16), (8, 8, 9, 8)])
def test_fused_ops_equal_the_separate_ones(layout, cin, cout, k, groups):
    conv = _conv(cin, cout, k, groups, layout)
    x = _seeded(2, cin, 13, 11).contiguous(memory_format=layout)
    other = _seeded(2, cout, 13, 11, seed=2).contiguous(memory_format=layout)
    scale = _seeded(cout, seed=3)
    with torch.inference_mode():
        plain = conv(x)
        assert (conv_gelu(conv, x) - F.gelu(plain)).abs().max() < 1e-6
        assert (conv_then(conv, x, "mul", other) - plain * other).abs().max() < 1e-5
        scaled = conv_then(conv, x, "add", other, scale=scale)
        assert (scaled - (scale[:, None, None] * plain + other)).abs().max() < 1e-5
        expected = plain + other
        target = other.clone()
        got = conv_then(conv, x, "add", target, into_other=True)
        assert got.data_ptr() == target.data_ptr() and (got - expected).abs().max() < 1e-6


def test_depthwise_weight_slices_run_over_channel_slices():
    conv = _conv(16, 16, 3, 16)
    x = _seeded(2, 16, 9, 10)
    with torch.inference_mode():
        full = conv(x) - conv.bias[:, None, None]
        assert (conv_gelu(conv, x[:, :8], conv.weight[:8]) - F.gelu(full[:, :8])).abs().max() < 1e-6
        gate = _seeded(2, 8, 9, 10, seed=4)
        got = conv_then(conv, x[:, 8:], "mul", gate, weight=conv.weight[8:])
        assert (got - full[:, 8:] * gate).abs().max() < 1e-6
    with pytest.raises(ValueError, match="depth-wise"):
        conv_gelu(_conv(16, 8, 3), x, _conv(16, 8, 3).weight[:4])


def test_fused_ops_apply_to_fp32_cpu_inference_only():
    x = torch.zeros(1, 4, 5, 5)
    with torch.inference_mode():
        assert fusable(x)
        assert not fusable(x.bfloat16())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fusable(x)
    with torch.no_grad():
        assert fusable(x)
    assert not fusable(x)  # autograd on: the fused ops have no backward


def _count_calls(monkeypatch, module, names=("conv_gelu", "conv_then")) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(fused_conv, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts


def _perturbed(model: torch.nn.Module, std: float) -> torch.nn.Module:
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn_like(p))
    return model.eval()


# Each network's fused path against its plain one: (build, input shape, module the fused ops are called from,
# calls made). Tolerance: fp32 rounding of the output's largest value (CFSR's reach ~20 here).
NETWORKS = {
    # released (merged) form, layer scales perturbed to O(1) so every fused residual counts (3 blocks)
    "CFSR": (
        lambda: _perturbed(CFSR(embed_dim=16, depths=(2, 1), dw_size=5, scale=2), 0.3),
        (1, 3, 20, 17), cfsr, {"conv_gelu": 3 * 3, "conv_then": 3 * 3 + 2},
    ),
    # eval mode on a map larger than the TLC crops, so the sliced crops run too
    "DLGSANet": (
        lambda: _perturbed(DLGSANet(dim=12, groups=1, blocks=2, idynamic_num_heads=3, restormer_num_heads=2,
                                    window_size=5, tlc_kernel=8, scale=2), 0.05),
        (2, 3, 19, 14), blocks, {"conv_gelu": 4, "conv_then": 8},
    ),
    # half the windows routed to attention (ratio 0.5): the same windows must be chosen on both paths
    "CAMixerSR": (
        lambda: _perturbed(CAMixerSR(n_block=(2, 1), n_group=2, n_feats=16, scale=2, ratio=0.5), 0.05),
        (1, 3, 32, 48), blocks, {"conv_gelu": 3, "conv_then": 6},
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS, ids=["nchw", "nhwc"])
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_inference_path_equals_the_plain_one(monkeypatch, name, layout):
    build, shape, module, calls = NETWORKS[name]
    model = build().to(memory_format=layout)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=layout)
    counts = _count_calls(monkeypatch, module)
    with torch.enable_grad():
        plain = model(x)
    assert counts == {"conv_gelu": 0, "conv_then": 0}
    with torch.inference_mode():
        fused = model(x)
    assert counts == calls
    assert (fused - plain).abs().max().item() < 4e-6 * max(plain.abs().max().item(), 1.0)


def test_sliced_crops_sum_exactly_as_the_gathered_ones(monkeypatch):
    """The eager crops (slices) against the traced form (index_select / scatter_add): the same values."""
    torch.manual_seed(0)
    attention = SparseAttention(12, 2, 8, torch.nn.ReLU(), tlc=True).eval()
    qkv = torch.randn(2, 36, 21, 13)
    with torch.inference_mode():
        sliced = attention._attend_in_crops(qkv)
        monkeypatch.setattr(dlgsanet, "is_graph_capture", lambda: True)
        gathered = attention._attend_in_crops(qkv)
    assert torch.equal(sliced, gathered)

