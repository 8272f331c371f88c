"""Entropy coding of integer latents with constriction's ANS coder and integer frequency tables.

Each latent element names the table it is coded with (a scale-table index, or a channel for
factorized latents). Elements are grouped by table so each group is one vectorised constriction call.
A table's last symbol is an escape; escaped values follow as uniform 16-bit symbols, so any value in
[-RAW_LIMIT, RAW_LIMIT] is codable. ANS is a stack: ``encode`` pushes in reverse of ``decode``'s order.

The tables are integers stored in the model package, so the coder's probabilities never depend on the
decoder's floating point.
"""
from __future__ import annotations

import constriction
import numpy as np

# constriction is one compiled module: its submodules are attributes, not importable packages.
Categorical = constriction.stream.model.Categorical
AnsCoder = constriction.stream.stack.AnsCoder

RAW_LIMIT = 32767
_RAW = constriction.stream.model.Uniform(2 * RAW_LIMIT + 1)


class FrequencyTables:
    """A set of discrete distributions over consecutive integers, each with an escape symbol."""

    def __init__(self, freqs: np.ndarray, offsets: np.ndarray, minima: np.ndarray, precision: int):
        scale = 2.0**-precision
        self.minima = minima.astype(np.int64)
        self.offsets = offsets.astype(np.int64)
        self.sizes = np.diff(offsets).astype(np.int64)  # including the escape symbol
        self.models = [Categorical(freqs[a:b].astype(np.float64) * scale, perfect=False) for a, b in zip(offsets[:-1], offsets[1:])]
        self.costs = -np.log2(np.maximum(freqs, 1).astype(np.float64) * scale)  # bits of every symbol, flat

    def __len__(self) -> int:
        return len(self.models)

    def bits(self, values: np.ndarray, table_ids: np.ndarray) -> np.ndarray:
        """What coding each of ``values`` with its table costs, in bits (escapes included); same shapes."""
        v = np.clip(values.astype(np.int64), -RAW_LIMIT, RAW_LIMIT) - self.minima[table_ids]
        escape_symbol = self.sizes[table_ids] - 1
        escaped = (v < 0) | (v >= escape_symbol)
        cost = self.costs[self.offsets[table_ids] + np.where(escaped, escape_symbol, v)]
        return cost + escaped * np.log2(2 * RAW_LIMIT + 1)


def _groups(table_ids: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    order = np.argsort(table_ids, kind="stable")
    ids = table_ids[order]
    if len(ids) == 0:
        return order, []
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    return order, [(int(ids[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def encode(coder: AnsCoder, values: np.ndarray, table_ids: np.ndarray, tables: FrequencyTables) -> None:
    """Push ``values`` (int, flat) coded with ``tables`` chosen per element by ``table_ids`` (flat)."""
    order, groups = _groups(table_ids)
    sorted_values = np.clip(values[order].astype(np.int64), -RAW_LIMIT, RAW_LIMIT)
    for table, start, end in reversed(groups):
        v = sorted_values[start:end] - tables.minima[table]
        escape_symbol = tables.sizes[table] - 1
        escaped = (v < 0) | (v >= escape_symbol)
        if escaped.any():
            coder.encode_reverse((sorted_values[start:end][escaped] + RAW_LIMIT).astype(np.int32), _RAW)
            v = np.where(escaped, escape_symbol, v)
        coder.encode_reverse(v.astype(np.int32), tables.models[table])


def decode(coder: AnsCoder, table_ids: np.ndarray, tables: FrequencyTables) -> np.ndarray:
    """Pop values for elements whose tables are ``table_ids`` (flat); inverse of ``encode``."""
    order, groups = _groups(table_ids)
    out = np.empty(len(table_ids), dtype=np.int64)
    for table, start, end in groups:
        v = coder.decode(tables.models[table], end - start).astype(np.int64)
        escape_symbol = tables.sizes[table] - 1
        escaped = v == escape_symbol
        v += tables.minima[table]
        if escaped.any():
            v[escaped] = coder.decode(_RAW, int(escaped.sum())).astype(np.int64) - RAW_LIMIT
        out[order[start:end]] = v
    return out
