"""Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) for the MS-SSIM training option.

Standard settings: 11x11 Gaussian window (sigma 1.5), five scales with the published weights, 2x2
average pooling between scales, inputs in [0, 1]. Returns one value per image.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
C1, C2 = 0.01**2, 0.03**2


def _window(channels: int, device: torch.device, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[1]

    def blur(t):
        return F.conv2d(t, window, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    contrast_structure = (2 * cov + C2) / (var_x + var_y + C2)
    luminance = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1)
    return (luminance * contrast_structure).flatten(1).mean(1), contrast_structure.flatten(1).mean(1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) MS-SSIM of images x, y in [0, 1]; needs at least 11 * 16 = 176 px for all five scales,
    smaller inputs use as many scales as fit."""
    x, y = x.float(), y.float()
    window = _window(x.shape[1], x.device)
    scales = [w for i, w in enumerate(WEIGHTS) if min(x.shape[2:]) // 2**i >= 11]
    weights = torch.tensor(scales, device=x.device) / sum(scales)
    values = []
    for i in range(len(scales)):
        ssim, cs = _ssim_terms(x, y, window)
        values.append(ssim if i == len(scales) - 1 else cs)
        if i < len(scales) - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-6)
    return torch.prod(stacked ** weights[None, :], dim=1)
