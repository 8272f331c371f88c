"""Entropy models used in training, and the integer frequency tables they become at export.

* ``EntropyBottleneck``: the non-parametric factorized density of Ballé et al. 2018 (appendix 6.1),
  one density per channel; used for the top-level latent of every model.
* ``gaussian_likelihood``: a discretized Gaussian with a predicted mean and scale. Scales are
  predicted as a continuous *scale-table position* ``t``: sigma = SCALE_MIN * exp(SCALE_STEP * t),
  so that at run time the table index is simply round(t), computed in integer arithmetic.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.layers import lower_bound

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
SCALE_STEP = math.log(SCALE_MAX / SCALE_MIN) / (SCALE_LEVELS - 1)
LIKELIHOOD_MIN = 1e-9
TABLE_PRECISION = 24  # frequencies sum to 2**24, the precision of constriction's default ANS coder


def scale_table() -> np.ndarray:
    return SCALE_MIN * np.exp(SCALE_STEP * np.arange(SCALE_LEVELS))


def scale_from_position(t: torch.Tensor) -> torch.Tensor:
    """sigma for a continuous table position t, clamped to the table's range (gradient kept at the low end)."""
    t = lower_bound(t, 0.0).clamp_max(SCALE_LEVELS - 1)
    return SCALE_MIN * torch.exp(SCALE_STEP * t)


def _standard_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_likelihood(values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(round-bin of values) under N(mean, scale), computed on the symmetric side for accuracy."""
    v = (values - mean).abs()
    upper = _standard_cdf((0.5 - v) / scale)
    lower = _standard_cdf((-0.5 - v) / scale)
    return lower_bound(upper - lower, LIKELIHOOD_MIN)


class EntropyBottleneck(nn.Module):
    """Per-channel learned cumulative density c(x), a monotone 1-3-3-3-1 network (Ballé et al. 2018)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """x: (C, 1, n) -> logits of c(x), same shape."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i]) * torch.tanh(logits)
        return logits

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(round-bin of z) for z of shape (B, C, H, W)."""
        b, c, h, w = z.shape
        flat = z.permute(1, 0, 2, 3).reshape(c, 1, -1).float()
        lower = self.logits_cumulative(flat - 0.5)
        upper = self.logits_cumulative(flat + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate on the tail with the smaller magnitude
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        p = lower_bound(p, LIKELIHOOD_MIN)
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def pmf_tables(self, max_support: int = 255, tail_mass: float = 1e-9) -> list[tuple[int, np.ndarray]]:
        """(first symbol, probabilities) per channel over the integers where the density lives."""
        c = self.matrices[0].shape[0]
        grid = torch.arange(-max_support, max_support + 1, dtype=torch.float32)
        flat = grid.view(1, 1, -1).expand(c, 1, -1)
        lower = torch.sigmoid(self.logits_cumulative(flat - 0.5))
        upper = torch.sigmoid(self.logits_cumulative(flat + 0.5))
        pmf = (upper - lower).squeeze(1).double().numpy()
        cdf_low = lower.squeeze(1).double().numpy()
        cdf_high = upper.squeeze(1).double().numpy()
        tables = []
        for ch in range(c):
            keep = np.nonzero((cdf_high[ch] > tail_mass) & (cdf_low[ch] < 1 - tail_mass))[0]
            lo, hi = (keep[0], keep[-1]) if len(keep) else (max_support, max_support)
            tables.append((int(grid[lo]), pmf[ch, lo : hi + 1]))
        return tables


def gaussian_pmf_tables(tail_sigmas: float = 7.0) -> list[tuple[int, np.ndarray]]:
    """(first symbol, probabilities) of a zero-mean discretized Gaussian per scale-table entry."""
    tables = []
    for sigma in scale_table():
        half = int(math.ceil(tail_sigmas * sigma)) + 1
        k = torch.arange(-half, half + 1, dtype=torch.float64)
        pmf = torch.special.ndtr((k + 0.5) / sigma) - torch.special.ndtr((k - 0.5) / sigma)
        tables.append((-half, pmf.numpy()))
    return tables


def quantize_tables(tables: list[tuple[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """Integer frequency tables (each sums to 2**TABLE_PRECISION, every entry >= 1), plus one escape
    symbol at the end of each table for values outside its support. Stored once at export so that
    every decoder uses identical integers, whatever its floating point does."""
    total = 1 << TABLE_PRECISION
    freqs, offsets, minima = [], [0], []
    for first, pmf in tables:
        escape = max(1.0 - float(pmf.sum()), 0.0)
        p = np.append(np.maximum(pmf, 0.0), escape)
        f = np.maximum(np.floor(p / p.sum() * (total - len(p))), 0).astype(np.int64) + 1
        f[np.argmax(f)] += total - int(f.sum())  # exact total; the largest bin absorbs the rounding
        freqs.append(f.astype(np.uint32))
        offsets.append(offsets[-1] + len(f))
        minima.append(first)
    return {
        "freqs": np.concatenate(freqs),
        "offsets": np.asarray(offsets, dtype=np.int64),
        "minima": np.asarray(minima, dtype=np.int32),
    }
