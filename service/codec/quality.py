"""Image quality metrics on 8-bit RGB arrays: PSNR and MS-SSIM.

MS-SSIM follows Wang, Simoncelli, Bovik (2003) with the usual settings (11x11 Gaussian window,
sigma 1.5, five scales with the published weights, 2x2 average pooling, data range 1), the same
definition as ``models/ms_ssim.py`` (the training loss) and pytorch_msssim, so our numbers sit on
the same scale as CompressAI's published ``ms-ssim-rgb``. NumPy only: the service's comparison
(``POST /compare``) computes it at run time, where scipy is not installed.
"""
from __future__ import annotations

import numpy as np

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
    """Separable 'valid' Gaussian filter over the two spatial axes of an (H, W) array: one
    multiply-add of a shifted view per tap, so memory stays a few copies of the image."""
    n = len(g)
    rows = sum(g[k] * t[k : t.shape[0] - n + 1 + k] for k in range(n))
    return sum(g[k] * rows[:, k : rows.shape[1] - n + 1 + k] for k in range(n))


def _ssim_terms(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term over every pixel and channel; one channel at a time,
    so that the filtered planes of a large image stay a few of one channel's size."""
    ssim = cs = 0.0
    for c in range(x.shape[2]):
        xc, yc = x[:, :, c], y[:, :, c]
        mu_x, mu_y = _blur(xc, g), _blur(yc, g)
        var_x = _blur(xc * xc, g) - mu_x**2
        var_y = _blur(yc * yc, g) - mu_y**2
        cov = _blur(xc * yc, g) - mu_x * mu_y
        contrast_structure = (2 * cov + C2) / (var_x + var_y + C2)
        luminance = (2 * mu_x * mu_y + C1) / (mu_x**2 + mu_y**2 + C1)
        ssim += float(np.sum(luminance * contrast_structure))
        cs += float(np.sum(contrast_structure))
    count = x.shape[2] * mu_x.size
    return ssim / count, cs / count


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
