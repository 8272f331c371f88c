"""The int8 simulation a transform is fine-tuned through: the rounding it does is the rounding
onnxruntime's static int8 does (per-channel 7-bit weights, uint8 activations over one range per
tensor), only the convolution models/quantize.py quantises is rounded (the one doing most of the
arithmetic: g_s's third transposed one, g_a's second), and gradients pass straight through; the encoder-side fine-tune trains g_a and
h_a and leaves the decoder as it was."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.architectures import MeanScaleHyperprior
from models.int8_finetune import QUANTIZED, ActivationRange, Int8Simulation, analysis_loss, pixel_pool, quantize_weight, synthesis_loss
from models.layers import GDN


def tiny_synthesis() -> nn.Sequential:
    torch.manual_seed(0)

    def up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
        return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)

    return nn.Sequential(up(8, 6), GDN(6, inverse=True), up(6, 6), GDN(6, inverse=True), up(6, 6),
                         GDN(6, inverse=True), up(6, 3))


def test_weights_take_at_most_127_levels_per_output_channel_and_pass_gradients():
    w = torch.randn(6, 4, 5, 5, requires_grad=True)  # a transposed convolution's: outputs on axis 1
    q = quantize_weight(w, 1)  # 7 bits, as the shipped twins (models.quantize.WEIGHT_BITS)
    for channel in range(4):
        step = w[:, channel].abs().max() / 63
        levels = torch.round(q[:, channel] / step)
        assert torch.allclose(levels * step, q[:, channel], atol=1e-6) and levels.abs().max() <= 63
    assert (q - w).abs().max() <= w.abs().amax(dim=(0, 2, 3)).max() / 126 + 1e-6
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through
    conv = torch.randn(4, 6, 5, 5)  # a convolution's: outputs on axis 0
    assert torch.equal(quantize_weight(conv, 0), quantize_weight(conv.transpose(0, 1), 1).transpose(0, 1))


def test_activations_take_256_levels_over_a_range_holding_zero():
    x = torch.randn(2, 6, 16, 16) + 3  # all positive but for a few: the range still holds 0
    rounded = ActivationRange()(x, update=True)
    assert 150 < len(torch.unique(rounded)) <= 256
    assert (rounded - x.clamp(max=float(x.max()))).abs().median() < (x.max() - x.min()) / 255


def test_only_the_third_transposed_convolution_is_rounded():
    g_s = tiny_synthesis()
    simulated = Int8Simulation(g_s, QUANTIZED["g_s"])
    assert sorted(simulated.quantized) == [4]
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
    simulated = Int8Simulation(g_s, QUANTIZED["g_s"]).train()
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


def test_the_analysis_rounds_its_second_convolution():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(n=8, m=12)
    simulated = Int8Simulation(model.g_a, QUANTIZED["g_a"])
    assert sorted(simulated.quantized) == [2]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        exact, rounded = model.g_a(x), simulated(x)
    assert exact.shape == rounded.shape == (1, 12, 4, 4) and 0 < (exact - rounded).abs().max() < 0.1 * exact.abs().max()


def test_the_encoder_side_fine_tune_moves_only_the_encoder():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(n=8, m=12)
    decoder = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(("g_a.", "h_a."))}
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    encoder = [p for module in (model.g_a, model.h_a) for p in module.parameters()]
    for parameter in encoder:
        parameter.requires_grad_(True)
    simulated = Int8Simulation(model.g_a, QUANTIZED["g_a"]).train()
    loss_of = analysis_loss(model, simulated)
    pool = pixel_pool([np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(4)], np.random.default_rng(0))
    optimizer = torch.optim.Adam(encoder, lr=1e-3)
    for _ in range(3):
        loss = loss_of(pool, True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder)
    assert model.g_a is simulated.layers  # the float g_a is back in place after every pass
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in decoder.items())
    simulated.eval()
    with torch.no_grad():
        assert torch.isfinite(loss_of(pool, True)) and torch.isfinite(loss_of(pool, False))


def test_the_synthesis_loss_rates_float_and_simulated_g_s_on_decoded_latents():
    torch.manual_seed(0)
    model = MeanScaleHyperprior(n=8, m=12)
    simulated = Int8Simulation(model.g_s, QUANTIZED["g_s"]).train()
    loss_of = synthesis_loss(model, simulated)
    items = [(np.random.default_rng(i).random((3, 64, 64), dtype=np.float32), np.random.default_rng(i).normal(0, 2, (12, 4, 4)).astype(np.float32), float(i + 1))
             for i in range(4)]
    with torch.no_grad():
        rounded, exact = float(loss_of(items, True)), float(loss_of(items, False))
    assert np.isfinite(rounded) and np.isfinite(exact) and rounded != exact
