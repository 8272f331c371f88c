"""Bit-exact hyper-synthesis: the path from decoded hyper-latents to entropy parameters.

Float networks give slightly different results on different backends, thread counts and CPUs, and one
differing scale index desynchronises the entropy decoder (CompressAI #279, #309, #340). Here the
trained float hyper-synthesis is converted to fixed point: activations carry ACT_FRAC fractional bits,
each layer's weights ``weight_frac`` bits, and every product and partial sum is an integer held in
float64 whose magnitude is proven (at conversion) to stay below 2**53. Integer sums that are exactly
representable give the same result in any summation order, so any BLAS, any GPU and any thread count
computes identical outputs. Rescaling between layers multiplies by powers of two and floors: exact too.

The network uses only what this needs: im2col + MatMul (float64), Add, Floor, Clip, ReLU and
depth-to-space written as Reshape/Transpose, so it exports to ONNX and runs the same in PyTorch.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from models.architectures import HyperSynthesis
from models.entropy_models import SCALE_LEVELS

ACT_FRAC = 10  # fractional bits of activations and of predicted means
ACT_LIMIT = 2.0**22  # activations are clamped to +-4096 (in real units), which bounds every sum
EXACT_LIMIT = 2.0**53
MAX_WEIGHT_FRAC = 16


def _floor_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.floor(x * 2.0**-bits)


class IntegerConv(nn.Module):
    """Same-padded stride-1 convolution in fixed point: out = floor((W_int * a + b_int) / 2**weight_frac).

    Keeps the float weights (the trained fp16 values: what a released package stores, so the package
    is also the model's only copy) and rounds them to integers inside the exported graph. Scaling by a power of two
    and rounding half to even are exact in float64, so PyTorch and onnxruntime (which folds this once,
    when it loads the graph) hold identical integers."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.register_buffer("weight", conv.weight.detach().float().clone())
        self.register_buffer("bias", conv.bias.detach().float().clone())
        self.kernel = conv.kernel_size[0]
        w, b = self.weight.double(), self.bias.double()
        taps = w.shape[1] * self.kernel**2
        # Largest weight precision for which |sum| <= sum|W_int| * ACT_LIMIT + |b_int| < 2**53 provably.
        worst = float(w.abs().flatten(1).sum(1).max()) + float(b.abs().max()) + 1.0
        frac = min(MAX_WEIGHT_FRAC, math.floor(math.log2(EXACT_LIMIT / 2 / (worst * ACT_LIMIT + taps))))
        if frac < 6:
            raise ValueError(f"weights too large for exact integer arithmetic ({worst:.1f})")
        self.weight_frac = frac
        w_int, b_int = self.integer_weights()
        assert float(w_int.abs().sum(1).max()) * ACT_LIMIT + float(b_int.abs().max()) < EXACT_LIMIT
        # Eager runs reuse these; an ONNX export traces integer_weights() so the graph stores the floats.
        self.register_buffer("w_int", w_int, persistent=False)
        self.register_buffer("b_int", b_int, persistent=False)

    def integer_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_int as a matrix in im2col order (dy, dx, channel), b_int as a column), float64."""
        w_int = torch.round(self.weight.double() * 2.0**self.weight_frac).permute(0, 2, 3, 1)
        b_int = torch.round(self.bias.double() * 2.0 ** (self.weight_frac + ACT_FRAC))
        return w_int.reshape(w_int.shape[0], -1), b_int.view(-1, 1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        b, _, h, w = a.shape
        if self.kernel > 1:
            pad = self.kernel // 2
            padded = F.pad(a, (pad, pad, pad, pad))
            a = torch.cat(
                [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(self.kernel) for dx in range(self.kernel)], dim=1
            )
        w_int, b_int = self.integer_weights() if torch.onnx.is_in_onnx_export() else (self.w_int, self.b_int)
        acc = torch.matmul(w_int, a.reshape(b, a.shape[1], h * w)) + b_int
        out = _floor_shift(acc, self.weight_frac).clamp(-ACT_LIMIT, ACT_LIMIT)
        return out.reshape(b, -1, h, w)


class DepthToSpace(nn.Module):
    """pixel_shuffle(2) as reshape/transpose (type-agnostic in ONNX)."""

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        b, c, h, w = a.shape
        a = a.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
        return a.reshape(b, c // 4, h * 2, w * 2)


def _convert(module: nn.Module) -> nn.Module:
    """The integer twin of a layer; Sequentials keep their nesting, so the twin's weights have the
    float network's names (a package's graph names its weights as the checkpoint does)."""
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*[_convert(child) for child in module])
    if isinstance(module, nn.Conv2d):
        assert module.stride == (1, 1) and module.padding[0] == module.kernel_size[0] // 2
        return IntegerConv(module)
    if isinstance(module, nn.ReLU):
        return nn.ReLU()
    if isinstance(module, nn.PixelShuffle):
        assert module.upscale_factor == 2
        return DepthToSpace()
    raise TypeError(f"no integer form for {type(module).__name__}")


class IntegerHyperSynthesis(nn.Module):
    """Fixed-point twin of a trained ``HyperSynthesis``.

    Input: decoded hyper-latent (real values with at most ACT_FRAC fractional bits), float64.
    Outputs: features (float32, for the synthesis), mean (float64, exact multiples of 2**-ACT_FRAC)
    and scale-table index (int64) per latent element.
    """

    def __init__(self, float_net: HyperSynthesis):
        super().__init__()
        self.trunk = _convert(float_net.trunk)
        self.head = _convert(float_net.head)
        self.channels, self.has_mean = float_net.channels, float_net.has_mean

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = torch.floor(z_hat * 2.0**ACT_FRAC).clamp(-ACT_LIMIT, ACT_LIMIT)
        a = self.trunk(a)
        features = (a * 2.0**-ACT_FRAC).float()
        out = self.head(a)
        if self.has_mean:
            mean, position = out[:, : self.channels], out[:, self.channels :]
        else:
            mean, position = torch.zeros_like(out), out
        index = _floor_shift(position + 2.0 ** (ACT_FRAC - 1), ACT_FRAC).clamp(0, SCALE_LEVELS - 1)
        return features, mean * 2.0**-ACT_FRAC, index.long()
