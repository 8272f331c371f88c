"""Image quality metrics on 8-bit RGB arrays: PSNR and MS-SSIM.

MS-SSIM follows Wang, Simoncelli, Bovik (2003) with the usual settings (11x11 Gaussian window,
sigma 1.5, five scales with the published weights, 2x2 average pooling, data range 1), the same
definition as ``models/ms_ssim.py`` (the training loss) and pytorch_msssim, so our numbers sit on
the same scale as CompressAI's published ``ms-ssim-rgb``.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from service.codec.image_io import psnr

__all__ = ["ms_ssim", "psnr"]

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
C1, C2 = 0.01**2, 0.03**2
WINDOW = 11


def _gaussian(size: int = WINDOW, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filter over the two spatial axes of an (H, W, C) array."""
    half = len(g) // 2
    out = correlate1d(correlate1d(t, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    return out[half : t.shape[0] - half, half : t.shape[1] - half]


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x**2
    var_y = _blur(y * y, g) - mu_y**2
    cov = _blur(x * y, g) - mu_x * mu_y
    contrast_structure = (2 * cov + C2) / (var_x + var_y + C2)
    luminance = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1)
    return float(np.mean(luminance * contrast_structure)), float(np.mean(contrast_structure))


def _pool(t: np.ndarray) -> np.ndarray:
    h, w = t.shape[0] // 2 * 2, t.shape[1] // 2 * 2
    t = t[:h, :w]
    return 0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2])


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of two (H, W, 3) uint8 images; images under 176 px use as many scales as fit."""
    if reference.shape != test.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {test.shape}")
    x, y = reference.astype(np.float64) / 255, test.astype(np.float64) / 255
    g = _gaussian()
    scales = [w for i, w in enumerate(WEIGHTS) if min(x.shape[:2]) // 2**i >= WINDOW]
    weights = np.array(scales) / sum(scales)
    values = []
    for i in range(len(scales)):
        ssim, cs = _ssim_terms(x, y, g)
        values.append(ssim if i == len(scales) - 1 else cs)
        if i < len(scales) - 1:
            x, y = _pool(x), _pool(y)
    return float(np.prod(np.maximum(values, 1e-6) ** weights))
