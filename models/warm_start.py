"""Warm starts: begin a run from another checkpoint's weights instead of from scratch.

Two cases, both common when CPU-hours are scarce:

* another architecture: every tensor whose name and shape match is copied (coarse2fine starts from
  mean-scale's trained g_a/g_s), the rest stays freshly initialised;
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
    return len(loaded) - widened, widened
