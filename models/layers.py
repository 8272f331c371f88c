"""Building blocks shared by every architecture: GDN/IGDN, strided convolutions, sub-pixel up-sampling."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x back above the bound."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé et al. 2016), simplified form of Johnston et al. 2019:
    y = x / (beta + gamma * |x|)  (or its inverse, IGDN, y = x * (...)).

    beta and gamma are kept non-negative by squaring a reparametrised value, as in CompressAI.
    """

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_min = beta_min
        self._pedestal = 2.0**-36
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._pedestal))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._pedestal))

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        bound = lower_bound if self.training else torch.clamp_min  # plain ops for inference and export
        beta = bound(self.beta, (self.beta_min + self._pedestal) ** 0.5) ** 2 - self._pedestal
        gamma = bound(self.gamma, self._pedestal**0.5) ** 2 - self._pedestal
        return beta, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective_params()
        c = gamma.shape[0]
        norm = F.conv2d(x.abs(), gamma.to(x.dtype).view(c, c, 1, 1), beta.to(x.dtype))
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1)


class SubpixelUp(nn.Sequential):
    """3x3 convolution to 4x the channels, then depth-to-space x2.

    Used in hyper-synthesis instead of transposed convolutions, because the integer (bit-exact)
    version of a network needs only convolutions, ReLU and pixel shuffles.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2))
