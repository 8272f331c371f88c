"""The int8 simulation the synthesis is fine-tuned through: the rounding it does is the rounding
onnxruntime's static int8 does (per-channel 8-bit weights, uint8 activations over one range per
tensor), only the inner transposed convolutions are rounded, and gradients pass straight through."""
from __future__ import annotations

import torch
from torch import nn

from models.int8_finetune import ActivationRange, Int8Synthesis, quantize_weight
from models.layers import GDN


def tiny_synthesis() -> nn.Sequential:
    torch.manual_seed(0)

    def up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
        return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)

    return nn.Sequential(up(8, 6), GDN(6, inverse=True), up(6, 6), GDN(6, inverse=True), up(6, 6),
                         GDN(6, inverse=True), up(6, 3))


def test_weights_take_at_most_255_levels_per_output_channel_and_pass_gradients():
    w = torch.randn(6, 4, 5, 5, requires_grad=True)
    q = quantize_weight(w)
    for channel in range(4):
        step = w[:, channel].abs().max() / 127
        levels = torch.round(q[:, channel] / step)
        assert torch.allclose(levels * step, q[:, channel], atol=1e-6) and levels.abs().max() <= 127
    assert (q - w).abs().max() <= w.abs().amax(dim=(0, 2, 3)).max() / 254 + 1e-6
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_activations_take_256_levels_over_a_range_holding_zero():
    x = torch.randn(2, 6, 16, 16) + 3  # all positive but for a few: the range still holds 0
    rounded = ActivationRange()(x, update=True)
    assert 150 < len(torch.unique(rounded)) <= 256
    assert (rounded - x.clamp(max=float(x.max()))).abs().median() < (x.max() - x.min()) / 255


def test_only_the_inner_transposed_convolutions_are_rounded():
    g_s = tiny_synthesis()
    simulated = Int8Synthesis(g_s)
    assert sorted(simulated.quantized) == [2, 4]
    y = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        exact, rounded = g_s(y), simulated(y)
    assert exact.shape == rounded.shape == (1, 3, 96, 96)
    error = (exact - rounded).abs().max()
    assert 0 < error < 0.1 * exact.abs().max()
    simulated.quantized.clear()  # nothing rounded: the float synthesis exactly
    with torch.no_grad():
        assert torch.equal(simulated(y), exact)


def test_a_step_through_the_simulation_trains_the_synthesis():
    g_s = tiny_synthesis()
    simulated = Int8Synthesis(g_s).train()
    y, target = torch.randn(4, 8, 6, 6), torch.rand(4, 3, 96, 96)
    optimizer = torch.optim.Adam(g_s.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = ((simulated(y) - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(p.grad is not None for p in g_s.parameters())
    assert losses[-1] < 0.7 * losses[0]
