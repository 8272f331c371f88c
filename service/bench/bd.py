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


def _overlap_delta(anchor_x, anchor_y, test_x, test_y, method: str) -> float:
    """Mean difference of y(x) between the two curves over their common x range (nan without overlap)."""
    a_x, a_y, t_x, t_y = (np.asarray(v, float) for v in (anchor_x, anchor_y, test_x, test_y))
    lo, hi = max(a_x.min(), t_x.min()), min(a_x.max(), t_x.max())
    if hi <= lo:
        return float("nan")
    return (_integral(t_x, t_y, lo, hi, method) - _integral(a_x, a_y, lo, hi, method)) / (hi - lo)


def bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """Percent bitrate change of ``test`` against ``anchor`` at equal PSNR."""
    diff = _overlap_delta(anchor_psnr, np.log(anchor_rate), test_psnr, np.log(test_rate), method)
    return 100.0 * (np.exp(diff) - 1.0)


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr, method: str = "pchip") -> float:
    """dB PSNR change of ``test`` against ``anchor`` at equal rate."""
    return _overlap_delta(np.log(anchor_rate), anchor_psnr, np.log(test_rate), test_psnr, method)
