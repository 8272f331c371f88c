"""Batch API: encode and decode batches of same-shape tiles (from any images, at any qualities).

    analyze(x)                       g_a on a batch: (B,3,H,W) -> unscaled latent y
    encode(y, qualities)             gain, hyper-analysis, integer hyper-synthesis, quantization, ANS
                                     -> one payload per tile, and the decoded latents (for rate control);
                                     in two steps, prepare + finish, for an encoder that refines y between
    decode_latents(payloads, shape)  ANS + integer hyper-synthesis level by level
    synthesis_feeds(latents, q)      what g_s reads of each tile: y_hat (y over the gain), hyper features
    synthesize(feeds)                g_s on a batch of feeds (tiles' own, or windows stitched with neighbours')

Each tile's payload is self-contained. The symbols a tile decodes to depend only on its payload and
the integer hyper-synthesis, never on the batch it was coded in or on floating-point details.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.codec import entropy
from service.codec.backend import Backend
from service.codec.entropy import AnsCoder
from service.codec.manifest import Level
from service.codec.zoo import ModelPackage


@dataclass
class Latents:
    """Decoded values per level (float64, exact), symbols per level, and hyper features."""

    values: dict[str, np.ndarray]
    symbols: dict[str, np.ndarray]
    features: dict[str, np.ndarray]


@dataclass
class Prepared:
    """A batch of tiles on its way to the entropy coder, per level: the continuous (gained) latent,
    its predicted mean (0 for factorized levels) and table ids; ``latents`` fills as levels are rounded."""

    continuous: dict[str, np.ndarray]
    means: dict[str, np.ndarray]
    table_ids: dict[str, np.ndarray]
    latents: Latents

    def round(self, level: str) -> None:
        mean = self.means[level]
        symbols = np.clip(np.rint(self.continuous[level] - mean), -entropy.RAW_LIMIT, entropy.RAW_LIMIT)
        self.latents.symbols[level], self.latents.values[level] = symbols, symbols + mean


def _tile_name(payload: bytes, position: int, count: int) -> str:
    index = getattr(payload, "index", None)
    return f"tile {index}" if index is not None else f"tile payload {position} of {count}"


class TileCoder:
    def __init__(self, package: ModelPackage, backend: Backend):
        self.package, self.backend = package, backend
        self.levels = package.levels

    def _gains(self, qualities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.package.gains(float(q)) for q in qualities]
        gain = np.stack([g for g, _ in pairs])[:, :, None, None]
        inverse = np.stack([i for _, i in pairs])[:, :, None, None]
        return gain, inverse

    def tables(self, level: Level) -> entropy.FrequencyTables:
        return self.package.factorized_tables if level.hyper is None else self.package.gaussian_tables

    @staticmethod
    def _channel_ids(shape: tuple[int, ...]) -> np.ndarray:
        """Table id per element of a factorized latent (C, h, w): its channel."""
        return np.broadcast_to(np.arange(shape[0])[:, None, None], shape).ravel()

    def _hyper(self, level: Level, source: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.run(level.hyper, {"z_hat": np.ascontiguousarray(source, dtype=np.float64)})

    def analyze(self, x: np.ndarray) -> np.ndarray:
        return self.backend.run("g_a", {"x": np.ascontiguousarray(x, dtype=np.float32)})["y"]

    def prepare(self, y_raw: np.ndarray, qualities: np.ndarray) -> Prepared:
        """Gain, hyper-analysis, and every level rounded but the finest, y: its entropy parameters
        are then fixed while y is still continuous, so an encoder may refine it before ``finish``."""
        gain, _ = self._gains(qualities)
        y = (y_raw * gain).astype(np.float32)
        latents = self.backend.run("h_a", {"y": y}) if len(self.levels) > 1 else {}
        latents["y"] = y
        prepared = Prepared({}, {}, {}, Latents({}, {}, {}))
        previous = None
        for level in self.levels:
            v = latents[level.name].astype(np.float64)
            if level.hyper is None:
                mean = np.zeros_like(v)
                ids = np.stack([self._channel_ids(v.shape[1:])] * len(v))
            else:
                out = self._hyper(level, prepared.latents.values[previous])
                mean, ids = out["mean"], out["scale_index"].reshape(len(v), -1)
                prepared.latents.features[level.hyper] = out["features"]
            prepared.continuous[level.name], prepared.means[level.name], prepared.table_ids[level.name] = v, mean, ids
            if level.name != "y":
                prepared.round(level.name)
            previous = level.name
        return prepared

    def finish(self, prepared: Prepared) -> tuple[list[bytes], Latents]:
        """Round y and entropy-code every level: one payload per tile, and the decoded latents."""
        prepared.round("y")
        symbols = prepared.latents.symbols
        payloads = []
        for b in range(len(symbols["y"])):
            coder = AnsCoder()
            for level in reversed(self.levels):  # finest first: the decoder pops the coarsest first
                entropy.encode(coder, symbols[level.name][b].ravel(), prepared.table_ids[level.name][b], self.tables(level))
            payloads.append(coder.get_compressed().tobytes())
        return payloads, prepared.latents

    def encode(self, y_raw: np.ndarray, qualities: np.ndarray) -> tuple[list[bytes], Latents]:
        return self.finish(self.prepare(y_raw, qualities))

    def decode_latents(self, payloads: list[bytes], shape: tuple[int, int]) -> Latents:
        """Every level of each tile, coarsest first. Each payload must be consumed exactly, or
        ``BitstreamError`` names its tile (``bitstream.TilePayload.index``, else its place in ``payloads``)."""
        decoders = [entropy.PayloadDecoder(payload, _tile_name(payload, b, len(payloads))) for b, payload in enumerate(payloads)]
        values: dict[str, np.ndarray] = {}
        symbols: dict[str, np.ndarray] = {}
        features: dict[str, np.ndarray] = {}
        previous = None
        for level in self.levels:
            level_shape = (level.channels, shape[0] // level.stride, shape[1] // level.stride)
            if level.hyper is None:
                mean = np.zeros((len(payloads), *level_shape))
                ids = [self._channel_ids(level_shape)] * len(payloads)
            else:
                out = self._hyper(level, values[previous])
                mean, ids = out["mean"], list(out["scale_index"].reshape(len(payloads), -1))
                features[level.hyper] = out["features"]
            tables = self.tables(level)
            decoded = np.stack([entropy.decode(decoder, tile_ids, tables) for decoder, tile_ids in zip(decoders, ids)])
            symbols[level.name] = decoded.reshape(len(payloads), *level_shape).astype(np.float64)
            values[level.name] = symbols[level.name] + mean
            previous = level.name
        for decoder in decoders:
            decoder.finish()
        return Latents(values, symbols, features)

    def synthesis_feeds(self, latents: Latents, qualities: np.ndarray) -> dict[str, np.ndarray]:
        _, inverse = self._gains(qualities)
        feeds = {"y_hat": (latents.values["y"] * inverse).astype(np.float32)}
        feeds.update({name: latents.features[name] for name in self.package.synthesis_features})
        return feeds

    def synthesize(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """(B,3,H,W) float32 in [0, 1]."""
        return np.clip(self.backend.run("g_s", feeds)["x_hat"], 0.0, 1.0)
