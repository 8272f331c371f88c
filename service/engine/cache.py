"""Decoded-tile cache: Redis when ``LIC_REDIS_URL`` is set, an in-process LRU otherwise.

Keys: ``lic:tile:v1:<model>:<fingerprint>:<sha256 of the bitstream>:<tile index>``, values: the tile's
uint8 RGB pixels before deblocking (output format and region do not matter at this level); tiles that
an int8 synthesis decoded (``LIC_TRANSFORMS=int8``) are ``lic:tile.int8:v1:...``, apart from fp32's. Keys
``lic:latents:v1:...`` hold a tile's decoded latents (what the synthesis reads, as an .npz), which
the neighbours of a tile coded with context need. Redis
should run with ``maxmemory`` and ``maxmemory-policy allkeys-lru``; entries also carry a TTL.
If Redis is slow or down, lookups count as errors and the request goes on uncached; after an error
the cache is skipped for ``retry_s`` so a dead Redis does not add a timeout to every request.
"""
from __future__ import annotations

import io
import logging
import time
import zipfile
from collections import OrderedDict
from typing import Protocol

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("lic.cache")


def tile_key(model: str, fingerprint: str, content_hash: str, index: int, kind: str = "tile") -> str:
    return f"lic:{kind}:v1:{model}:{fingerprint}:{content_hash}:{index}"


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_arrays(data: bytes) -> dict[str, np.ndarray] | None:
    """The arrays of ``pack_arrays``, or None for an entry that does not read (counted as a miss)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        return None


class TileCache(Protocol):
    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...
    async def set_many(self, items: dict[str, bytes]) -> None: ...
    async def close(self) -> None: ...


class MemoryTileCache:
    """LRU bounded by total bytes, for the embedded single-process mode."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.size = max_bytes, 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        out = []
        for key in keys:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            out.append(value)
        return out

    async def set_many(self, items: dict[str, bytes]) -> None:
        for key, value in items.items():
            if len(value) > self.max_bytes:
                continue
            old = self._items.pop(key, None)
            self.size += len(value) - (len(old) if old else 0)
            self._items[key] = value
            while self.size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self.size -= len(evicted)

    async def close(self) -> None:
        self._items.clear()


class RedisTileCache:
    def __init__(self, url: str, ttl_s: int, timeout_s: float, retry_s: float, on_error):
        self.ttl, self.retry_s, self.on_error = ttl_s, retry_s, on_error
        self.client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=None)
        self._skip_until = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _failed(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + self.retry_s
        self.on_error()
        log.warning("tile cache unavailable (%s); serving uncached for %.1f s", type(exc).__name__, self.retry_s)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not keys or not self._available():
            return [None] * len(keys)
        try:
            return await self.client.mget(keys)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return [None] * len(keys)

    async def set_many(self, items: dict[str, bytes]) -> None:
        if not items or not self._available():
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, value, ex=self.ttl)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    async def close(self) -> None:
        await self.client.aclose()
