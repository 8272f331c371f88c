"""Bjøntegaard deltas between two rate-distortion curves.

``bd_rate``: mean relative bitrate difference at equal quality over the overlapping quality range,
integrating log-rate as a function of PSNR. ``method="pchip"`` (piecewise cubic Hermite, as in the
current JVET/VCEG practice) is the default; ``method="cubic"`` is the classic VCEG-M33 cubic fit.
Negative means the test curve needs fewer bits than the anchor.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    order = np.argsort(x)
    x, y = x[order], y[order]
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    poly = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(poly, hi) - np.polyval(poly, lo))


def bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """Percent bitrate change of ``test`` against ``anchor`` at equal PSNR."""
    a_r, a_p = np.log(np.asarray(anchor_rate, float)), np.asarray(anchor_psnr, float)
    t_r, t_p = np.log(np.asarray(test_rate, float)), np.asarray(test_psnr, float)
    lo, hi = max(a_p.min(), t_p.min()), min(a_p.max(), t_p.max())
    if hi <= lo:
        return float("nan")
    diff = (_integral(t_p, t_r, lo, hi, method) - _integral(a_p, a_r, lo, hi, method)) / (hi - lo)
    return 100.0 * (np.exp(diff) - 1.0)


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """dB PSNR change of ``test`` against ``anchor`` at equal rate."""
    a_r, a_p = np.log(np.asarray(anchor_rate, float)), np.asarray(anchor_psnr, float)
    t_r, t_p = np.log(np.asarray(test_rate, float)), np.asarray(test_psnr, float)
    lo, hi = max(a_r.min(), t_r.min()), min(a_r.max(), t_r.max())
    if hi <= lo:
        return float("nan")
    return (_integral(t_r, t_p, lo, hi, method) - _integral(a_r, a_p, lo, hi, method)) / (hi - lo)
