"""The coarse-to-fine paper's first training stage: the fine hyper level alone (Hu, Yang, Liu 2020; the
authors' training code trains y and z2 first, z2 under a zero-mean Gaussian with one learned scale per
channel, and adds the coarse level z1 after).

.. code-block:: none

    x --> g_a --> *gain(q) --> y --> h_a2 --> z2 --> Q --> z2_hat (GC: mean 0, one scale per channel)
                                                               |
                   y_hat (GC) <-- means and scales of y <-- h_s2

Why: fitted to the rate alone from a warm start, both hyper levels at once coded the default's latents
2-7% above a fresh one-level model fitted the same way on the CPU. In this order, 1,900 steps of this
stage and 950 with z1 (as many steps in all) reached the one-level model's rate: 3-6% fewer bits than
both levels at once on Kodak, 5-11% on hires photos (docs/training.md, "The paper's order on the CPU").
A bottleneck for z2 instead of this Gaussian did worse: its density, like a bare scale position, learnt
too slowly to make z2's zeros cheap.

The per-channel density is training-only: the run checkpoint keeps it (``fine_density``), and the next
stage, a ``--stage entropy`` run warm-started from that checkpoint, starts its coarse level from it
(``seed_coarse_level``): h_s1's head begins as this density (its last convolution zero, its bias the
learned scales), so z2 costs what it cost at the switch and h_s1 learns to do better from there.
"""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from models.architectures import CoarseToFine
from models.entropy_models import SCALE_LEVELS, gaussian_likelihood, scale_from_position

CHECKPOINT_KEY = "fine_density"


class ChannelGaussian(nn.Module):
    """Zero-mean Gaussian with one learned scale per channel, shared over space, as a scale position.

    The parameter is the position over the table's length: Adam moves a parameter by about the learning
    rate a step, so a bare position (0..63) at 5e-4 moved at most one place in 1,900 steps on the CPU and
    z2's scales stayed near 1, the start (0.33 bpp of z2 on Kodak at quality 1, its symbols 98% zero). Scaled,
    a step moves it 64 times as far, as fast as a hyper head's outputs."""

    def __init__(self, channels: int):
        super().__init__()
        self.fraction = nn.Parameter(torch.full((channels,), 18.0 / SCALE_LEVELS))  # sigma ~ 1, as a fresh hyper head

    @property
    def position(self) -> torch.Tensor:
        return self.fraction * SCALE_LEVELS

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        scale = scale_from_position(self.position).view(1, -1, 1, 1)
        return gaussian_likelihood(z, torch.zeros_like(scale), scale)


class FineFirst(nn.Module):
    """A coarse-to-fine model with z1 left out and z2 under a ``ChannelGaussian``: the rate pass of
    ``VariableRateCodec.forward`` without synthesis (an entropy stage's step)."""

    def __init__(self, model: CoarseToFine):
        super().__init__()
        if not isinstance(model, CoarseToFine):
            raise ValueError(f"the fine-first stage is coarse2fine's, not {model.architecture}'s")
        self.model = model
        self.density = ChannelGaussian(model.widths["h2"])
        _, z2, y = model.levels()  # z1 left out, z2 coded as the coarsest level
        self.levels = [replace(z2, hyper=None), y]

    def trained_parameters(self) -> list[nn.Parameter]:
        """What the rate of y and z2 depends on: h_a2, h_s2 and the density (g_a and the gains stay frozen)."""
        own = [p for name, p in self.model.named_parameters() if name.startswith(("h_a2.", "h_s2."))]
        return own + list(self.density.parameters())

    def forward(self, x: torch.Tensor, q: torch.Tensor, synthesize: bool = False) -> dict[str, torch.Tensor]:
        if synthesize:
            raise ValueError("the fine-first stage runs no synthesis")
        return self.model(x, q, synthesize=False, levels=self.levels, density=self.density)


def fine_stage(model: CoarseToFine, state: dict) -> FineFirst | None:
    """A run checkpoint's model as its stage trained it: a fine-first stage's (its ``state`` holds the
    density) with z2 under that density; None for any other checkpoint."""
    if CHECKPOINT_KEY not in state:
        return None
    fine = FineFirst(model)
    fine.density.load_state_dict(state[CHECKPOINT_KEY])
    return fine


@torch.no_grad()
def seed_coarse_level(model: CoarseToFine, fine_density: dict[str, torch.Tensor]) -> None:
    """Start h_s1 as the fine-first stage's density (its ``state_dict``): means 0 and its scale positions,
    whatever z1 is."""
    h2 = model.widths["h2"]
    density = ChannelGaussian(h2)
    density.load_state_dict(fine_density)
    head = model.h_s1.head[-1]
    head.weight.zero_()
    head.bias[:h2].zero_()
    head.bias[h2:].copy_(density.position.to(head.bias.device))
