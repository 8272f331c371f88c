"""Warm starts: begin a run from another checkpoint's weights instead of from scratch.

Two cases, both common when CPU-hours are scarce:

* another architecture: every tensor whose name and shape match is copied (coarse2fine starts from
  mean-scale's trained g_a/g_s), the rest stays freshly initialised. Coarse2fine's synthesis also
  starts as the source's (``_inherit_synthesis``), so a warm start begins at the source's distortion
  and only the entropy model and the aggregation of the hyper features have to be learnt;
* a wider latent (m grows, e.g. 96 -> 192 channels): a tensor whose latent-sized dimensions grew is
  *widened*. The old channels are copied into the leading slice of each m-sized block (the hyper
  head's [means | scale positions] are two blocks); the new channels keep their fresh
  initialisation, and gain tables give them the mean gain of the old channels at each quality.
  (New channels started near zero, so that the wide model began as the narrow one, stayed dead:
  after 2,700 steps none of them ever rounded to a non-zero value. Carrying information needs both
  a larger latent and a larger predicted scale, and neither gradient starts without the other.)
  Widening is defined for the hyperprior and mean-scale layouts (latent-sized dimensions are whole
  blocks of m channels); coarse2fine's pixel-shuffled and concatenated layers are not, so it only
  copies exact matches.
"""
from __future__ import annotations

import itertools

import torch

from models.architectures import VariableRateCodec

GAIN_TABLES = ("log_gain", "log_inverse_gain")
WIDENABLE = ("hyperprior", "mean-scale")


def _widened(fresh: torch.Tensor, old: torch.Tensor, old_m: int, new_m: int, name: str) -> torch.Tensor | None:
    """``old`` placed into a copy of ``fresh`` block by block, or None where the shapes do not fit."""
    if fresh.dim() != old.dim() or old_m == new_m:
        return None
    per_dim: list[list[tuple[slice, slice]]] = []
    for s, t in zip(old.shape, fresh.shape):
        if s == t:
            per_dim.append([(slice(None), slice(None))])
        elif s % old_m == 0 and t == s // old_m * new_m:
            per_dim.append([(slice(b * old_m, (b + 1) * old_m), slice(b * new_m, b * new_m + old_m)) for b in range(s // old_m)])
        else:
            return None
    if name.split(".")[-1] in GAIN_TABLES:
        out = old.mean(dim=1, keepdim=True).expand_as(fresh).clone()
    else:
        out = fresh.clone()
    for blocks in itertools.product(*per_dim):
        out[tuple(dst for _, dst in blocks)] = old[tuple(src for src, _ in blocks)]
    return out


def warm_start(model: VariableRateCodec, source: dict[str, torch.Tensor], source_config: dict | None = None) -> tuple[int, int]:
    """Load what fits of ``source`` into ``model``; returns (tensors copied, tensors widened).

    Widening needs ``source_config`` (the checkpoint's config) for the old latent width."""
    own = model.state_dict()
    source_config = source_config or {}
    same_layout = source_config.get("architecture") == model.architecture and model.architecture in WIDENABLE
    old_m, new_m = (source_config.get("m"), model.widths["m"]) if same_layout else (None, None)
    loaded: dict[str, torch.Tensor] = {}
    widened = 0
    for name, value in source.items():
        if name not in own:
            continue
        if own[name].shape == value.shape:
            loaded[name] = value.float()
        elif old_m and new_m and (grown := _widened(own[name].float(), value.float(), old_m, new_m, name)) is not None:
            loaded[name] = grown
            widened += 1
    model.load_state_dict(loaded, strict=False)
    if model.architecture == "coarse2fine" and source_config.get("architecture") != "coarse2fine":
        _inherit_synthesis(model, source)
    return len(loaded) - widened, widened


@torch.no_grad()
def _inherit_synthesis(model: VariableRateCodec, source: dict[str, torch.Tensor]) -> None:
    """Make coarse2fine's synthesis compute the source's: g_s's first six layers are copied already;
    its last layer, a transposed convolution to RGB, is rebuilt from ``reconstruct``.

    reconstruct = transposed conv (2n -> n/2), ReLU, 3x3 conv (-> 3), reading [g_s features | aggregated
    hyper features] + fuse(...). fuse's last convolution starts at zero (the residual is the identity);
    the transposed convolution's channels 0-2 carry the source's last layer on the g_s features and
    channels 3-5 its negative, so that relu(a) - relu(-a) = a in the 3x3 convolution's centre tap. Its
    other channels keep their fresh weights but start unread (zero weights in the 3x3 convolution):
    they are where the aggregated hyper features come in once training moves those weights.
    """
    weight, bias = source.get("g_s.6.weight"), source.get("g_s.6.bias")
    n = model.widths["n"]
    if weight is None or bias is None or weight.shape != (n, 3, 5, 5):
        return
    fuse_last, up, to_rgb = model.fuse[-1], model.reconstruct[0], model.reconstruct[-1]
    fuse_last.weight.zero_()
    fuse_last.bias.zero_()
    up.weight[:, :6].zero_()
    up.weight[:n, :3] = weight.float()
    up.weight[:n, 3:6] = -weight.float()
    up.bias[:3], up.bias[3:6] = bias.float(), -bias.float()
    to_rgb.weight.zero_()
    to_rgb.bias.zero_()
    for c in range(3):
        to_rgb.weight[c, c, 1, 1], to_rgb.weight[c, c + 3, 1, 1] = 1.0, -1.0
