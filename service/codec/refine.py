"""Encoder-side refinement of the latents: ``refine=N`` gradient steps (0 keeps the one-pass encoder).

g_a predicts a tile's latents in one pass, trained to be good on average. Given the image, the encoder
can do better for it. With the entropy parameters fixed (the hyper-latents are coded as g_a made
them), it descends the real rate-distortion objective over the finest latent y,

    L(y) = bits(ŷ) + λ·255²·Σ(x̂ − x)²/3,   ŷ = round(y − μ) + μ,   x̂ = g_s(ŷ / gain)

(Campos et al. 2019; Yang, Bamler, Mandt 2020). Rounding has no gradient, so each step relaxes it by
stochastic Gumbel annealing (SGA): ŷ is a random blend of the two grid points around y, weighted by
how near each is, and the blend hardens toward plain rounding as the temperature falls. Bits are the
blend's expected cost under the package's own frequency tables; g_s's gradient comes from its own
graph (``service.codec.vjp``); Adam takes the steps. The result is rounded and coded as usual: the
bitstream format and the decoder do not change, so any version decodes a refined stream.

All tiles are refined together: each tile's window is synthesised from its own and its neighbours'
latents, as the decoder will, and the gradient of its pixels flows back to all of them.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from service.codec.entropy import FrequencyTables
from service.codec.tile_coder import Prepared, TileCoder
from service.codec.tiles import TileGrid, TileView, extract, scatter_add, stitch

LEARNING_RATE = 0.05  # Adam, in quantisation bins
TEMPERATURE = (0.5, 0.05)  # SGA: starts at, never below; it falls as exp(-4 * step / iterations)
EDGE = 1e-4  # keeps atanh finite at the grid points


def check_refinable(coder: TileCoder) -> None:
    """Refinement needs a Gaussian-coded y (its bits are the hyperprior's tables) and a synthesis
    whose gradient the backend can compute (``Backend.prepare``); raises ValueError otherwise."""
    if coder.levels[-1].hyper is None:
        raise ValueError(f"model {coder.package.id} has no hyperprior: its latents cannot be refined")
    coder.backend.prepare("g_s_vjp")


def refine(coder: TileCoder, grid: TileGrid, context: int, groups: list[tuple[TileView, list[int]]],
           prepared: list[Prepared], rgb: np.ndarray, quality: float, iterations: int, seed: int = 0,
           checkpoint: Callable[[], None] = lambda: None) -> None:
    """Refine ``prepared[k].continuous["y"]`` in place for the tiles of ``groups`` (views and chunks, as
    analysed); ``rgb`` is the whole (H, W, 3) uint8 image. ``checkpoint`` runs before every step (it
    raises to stop the work)."""
    _, inverse = coder.package.gains(quality)
    inverse = inverse.astype(np.float64)[:, None, None]
    distortion_weight = coder.package.lmbda(quality) * 255.0**2 * 2 / 3  # d/dx̂ of λ·255²·Σ(x̂−x)²/3 = this·(x̂−x)
    tables = coder.tables(coder.levels[-1])
    tiles = {i: (k, b) for k, (_, chunk) in enumerate(groups) for b, i in enumerate(chunk)}
    y = {i: prepared[k].continuous["y"][b].copy() for i, (k, b) in tiles.items()}
    mean = {i: prepared[k].means["y"][b] for i, (k, b) in tiles.items()}
    ids = {i: prepared[k].table_ids["y"][b].reshape(y[i].shape) for i, (k, b) in tiles.items()}
    features = {name: {i: prepared[k].latents.features[name][b] for i, (k, b) in tiles.items()}
                for name in coder.package.synthesis_features}
    fixed = [_fixed_feeds(grid, context, view, chunk, rgb, features) for view, chunk in groups]
    adam = {i: (np.zeros_like(v), np.zeros_like(v)) for i, v in y.items()}
    rng = np.random.default_rng(seed)
    start, floor = TEMPERATURE
    for step in range(iterations):
        checkpoint()
        temperature = max(start * math.exp(-4 * step / iterations), floor)
        soft, slope, bits_gap = {}, {}, {}
        for i in y:
            soft[i], slope[i], bits_gap[i] = _sga(y[i], mean[i], ids[i], tables, temperature, rng)
        image_grad = _synthesis_gradient(coder, grid, groups, fixed, {i: soft[i] * inverse for i in y})
        for i in y:
            # ŷ = μ + ⌊r⌋ + 1 − p, so dL/dy = dp/dy · (bits(⌊r⌋) − bits(⌊r⌋ + 1) − dD/dŷ)
            grad = slope[i] * (bits_gap[i] - distortion_weight * inverse * image_grad[i])
            m, v = adam[i]  # Adam, betas 0.9 and 0.999
            m += 0.1 * (grad - m)
            v += 0.001 * (grad * grad - v)
            y[i] -= LEARNING_RATE * (m / (1 - 0.9 ** (step + 1))) / (np.sqrt(v / (1 - 0.999 ** (step + 1))) + 1e-8)
    for i, (k, b) in tiles.items():
        prepared[k].continuous["y"][b] = y[i]


def _sga(y: np.ndarray, mean: np.ndarray, ids: np.ndarray, tables: FrequencyTables, temperature: float,
         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One SGA draw: ŷ = μ + ⌊r⌋ + 1 − p, r = y − μ, with p the relaxed probability of rounding down.
    Returns ŷ, dp/dy, and bits(⌊r⌋) − bits(⌊r⌋ + 1)."""
    r = y - mean
    down = np.floor(r)
    d = np.clip(r - down, EDGE, 1 - EDGE)
    logit = (np.arctanh(1 - d) - np.arctanh(d)) / temperature + rng.logistic(size=r.shape)  # Gumbel-softmax of two
    p = 1 / (1 + np.exp(-logit))
    slope = -p * (1 - p) * (1 / (1 - d * d) + 1 / (1 - (1 - d) ** 2)) / temperature
    bits_gap = tables.bits(down, ids) - tables.bits(down + 1, ids)
    return mean + down + 1 - p, slope, bits_gap


def _fixed_feeds(grid: TileGrid, context: int, view: TileView, chunk: list[int], rgb: np.ndarray,
                 features: dict[str, dict[int, np.ndarray]]) -> dict[str, np.ndarray]:
    """What the gradient graph reads of a chunk's windows that no step changes: the pixels, their
    weights, and the hyper features the synthesis reads (coarse-to-fine)."""
    targets, weights = zip(*(_target(grid, context, view, i, rgb) for i in chunk))
    feeds = {name: np.stack([stitch(grid, i, view, planes) for i in chunk]).astype(np.float32) for name, planes in features.items()}
    return {**feeds, "target": np.stack(targets), "weight": np.stack(weights)}


def _synthesis_gradient(coder: TileCoder, grid: TileGrid, groups: list[tuple[TileView, list[int]]],
                        fixed: list[dict[str, np.ndarray]], y_hat: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """d/dŷ of ½·Σ(x̂ − x)² over the image's pixels, each counted once, in the tile it is decoded in."""
    grads = {i: np.zeros_like(v) for i, v in y_hat.items()}
    for (view, chunk), feeds in zip(groups, fixed):
        windows = np.stack([stitch(grid, i, view, y_hat) for i in chunk]).astype(np.float32)
        out = coder.backend.run("g_s_vjp", {**feeds, "y_hat": windows})
        for window, i in zip(out["grad"].astype(np.float64), chunk):
            scatter_add(grid, i, view, window, grads)
    return grads


def _target(grid: TileGrid, context: int, view: TileView, index: int, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The window's pixels (3, H, W) and a weight of 1 on the tile's own image pixels, 0 elsewhere."""
    x0, y0, x1, y1 = grid.window_rect(index, context)
    target = extract(rgb[y0:y1, x0:x1], (0, 0, x1 - x0, y1 - y0), view.window)
    weight = np.zeros((1, *view.window), np.float32)
    tx0, ty0, tx1, ty1 = grid.rect(index)
    top, left = view.margins[0], view.margins[1]
    weight[:, top : top + ty1 - ty0, left : left + tx1 - tx0] = 1
    return target, weight
