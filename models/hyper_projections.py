"""The coarse-to-fine paper's helping losses: each hyper-synthesis's features must predict the latent
whose entropy parameters they give, through a 3x3 projection (Hu, Yang, Liu 2020; the authors' training
code adds them in its stages 1-3 and drops them for the end-to-end stage 4).

.. code-block:: none

    z2_hat --> h_s2 --> f2 (m, 1/16)  --> 3x3 conv --> MSE against y  (detached)
    z1_hat --> h_s1 --> f1 (h2, 1/32) --> 3x3 conv --> MSE against z2 (detached)

Why: fitted to the rate alone, a fresh hyper level is slow to be worth its bits: while h_s2 cannot yet
read z2, z2's noise only worsens y's predicted means and scales (docs/training.md, "What the hyper path
carries"). The helping loss pays z2 for carrying y until the entropy model has learnt to use it. The
projections are training-only: they are not part of the model, its releases or the run time.

Measured on the CPU (docs/training.md, "The helping losses"): they widen z2, mostly at high
qualities (the gains scale y's energy 64-fold from quality 1 to 8, and the paper trains one model per
rate), but cost bits at equal steps at every weight tried, so the lease's stage 1 does without them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from models.architectures import HyperSynthesis, VariableRateCodec


def feature_channels(hyper: HyperSynthesis) -> int:
    """Channels of a hyper-synthesis's features: what its head's first convolution reads."""
    return next(layer for layer in hyper.head if isinstance(layer, nn.Conv2d)).in_channels


class HyperProjections(nn.Module):
    """One 3x3 projection per hyper-synthesis, from its features to the latent it predicts."""

    def __init__(self, model: VariableRateCodec):
        super().__init__()
        levels = [level for level in model.levels() if level.hyper is not None]
        self.targets = {level.hyper: level.name for level in levels}
        self.heads = nn.ModuleDict({
            level.hyper: nn.Conv2d(feature_channels(getattr(model, level.hyper)), level.channels, 3, padding=1)
            for level in levels
        })

    def forward(self, latents: dict[str, torch.Tensor], features: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sum over the hyper levels that ran (all but z1's in the fine-first stage, models/fine_first.py) of
        the mean squared error of each projection against its (detached) latent."""
        return sum(F.mse_loss(head(features[name].float()), latents[self.targets[name]].detach().float())
                   for name, head in self.heads.items() if name in features)
