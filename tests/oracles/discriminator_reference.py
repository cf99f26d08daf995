"""Float64 transcriptions of the GAN discriminators, written from the official code (Real-ESRGAN a4abfb2
`realesrgan/archs/discriminator_arch.py`, BasicSR 8d56e3a `basicsr/archs/discriminator_arch.py`) and of
torch.nn.utils.spectral_norm's weight normalisation, reading official-named state dicts (no `archs` import).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / max(float(x.norm()), eps)


def spectral_weight(
    sd: Weights, prefix: str, power_iteration: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight_orig / sigma, u, v) for the convolution at `prefix`, sigma = u·(W v) with W the weight as an
    out x (in·kh·kw) matrix; with `power_iteration` u and v first take one step, v ← W^T u / |W^T u| then
    u ← W v / |W v| (what a training-mode forward does before computing sigma)."""
    weight = sd[f"{prefix}.weight_orig"].double()
    u, v = sd[f"{prefix}.weight_u"].double(), sd[f"{prefix}.weight_v"].double()
    matrix = weight.reshape(weight.shape[0], -1)
    if power_iteration:
        v = _normalize(matrix.t() @ u)
        u = _normalize(matrix @ v)
    sigma = torch.dot(u, matrix @ v)
    return weight / sigma, u, v


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, 0.2 * x)


def unet_discriminator_sn(
    sd: Weights, x: torch.Tensor, skip_connection: bool = True, training: bool = False
) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """UNetDiscriminatorSN's output and, per normalised convolution, the (u, v) it leaves behind."""
    vectors = {}

    def conv(name: str, h: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        if f"{name}.weight_orig" in sd:
            weight, u, v = spectral_weight(sd, name, power_iteration=training)
            vectors[name] = (u, v)
            return F.conv2d(h, weight, None, stride, padding)
        return F.conv2d(h, sd[f"{name}.weight"].double(), sd[f"{name}.bias"].double(), stride, padding)

    def up(h: torch.Tensor) -> torch.Tensor:
        return F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)

    x = x.double()
    x0 = _lrelu(conv("conv0", x, 1, 1))
    x1 = _lrelu(conv("conv1", x0, 2, 1))
    x2 = _lrelu(conv("conv2", x1, 2, 1))
    x3 = _lrelu(conv("conv3", x2, 2, 1))
    x4 = _lrelu(conv("conv4", up(x3), 1, 1))
    if skip_connection:
        x4 = x4 + x2
    x5 = _lrelu(conv("conv5", up(x4), 1, 1))
    if skip_connection:
        x5 = x5 + x1
    x6 = _lrelu(conv("conv6", up(x5), 1, 1))
    if skip_connection:
        x6 = x6 + x0
    out = _lrelu(conv("conv7", x6, 1, 1))
    out = _lrelu(conv("conv8", out, 1, 1))
    return conv("conv9", out, 1, 1), vectors


def _batch_norm(sd: Weights, name: str, h: torch.Tensor, training: bool) -> torch.Tensor:
    if training:  # the batch's own statistics, biased variance
        mean = h.mean(dim=(0, 2, 3))
        var = ((h - mean[:, None, None]) ** 2).mean(dim=(0, 2, 3))
    else:
        mean, var = sd[f"{name}.running_mean"].double(), sd[f"{name}.running_var"].double()
    scale = sd[f"{name}.weight"].double() / torch.sqrt(var + 1e-5)
    return (h - mean[:, None, None]) * scale[:, None, None] + sd[f"{name}.bias"].double()[:, None, None]


def vgg_style_discriminator(sd: Weights, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """VGGStyleDiscriminator's N x 1 scores; six conv pairs when the weights hold conv5_0 (input 256)."""
    h = x.double()
    h = _lrelu(F.conv2d(h, sd["conv0_0.weight"].double(), sd["conv0_0.bias"].double(), 1, 1))
    h = _lrelu(_batch_norm(sd, "bn0_1", F.conv2d(h, sd["conv0_1.weight"].double(), None, 2, 1), training))
    stages = 6 if "conv5_0.weight" in sd else 5
    for i in range(1, stages):
        h = F.conv2d(h, sd[f"conv{i}_0.weight"].double(), None, 1, 1)
        h = _lrelu(_batch_norm(sd, f"bn{i}_0", h, training))
        h = F.conv2d(h, sd[f"conv{i}_1.weight"].double(), None, 2, 1)
        h = _lrelu(_batch_norm(sd, f"bn{i}_1", h, training))
    h = h.reshape(h.shape[0], -1)
    h = _lrelu(h @ sd["linear1.weight"].double().t() + sd["linear1.bias"].double())
    return h @ sd["linear2.weight"].double().t() + sd["linear2.bias"].double()
