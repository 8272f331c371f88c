"""The .lic container (format version 2; version 1 still reads). All integers little-endian.

    offset  size  field
    0       4     magic b"\\x89LIC"
    4       1     format version (2)
    5       1     flags: bit 0 = alpha plane present (exactly for modes LA and RGBA); bit 1 = an ICC
                  profile follows (the pixels are in its colour space; without it they are sRGB)
    6       1     length L of the model id, then L bytes of UTF-8 model id
    .       8     model fingerprint (first 8 bytes of the package's sha256 fingerprint)
    .       2     quality x 1000 (1000..8000)
    .       4     width, 4 height (pixels)
    .       1     mode: 0 L, 1 LA, 2 RGB, 3 RGBA (what decoding returns)
    .       2     tile size (pixels; multiple of 64, at most 4096)
    .       1     deblocking radius in pixels (0 = off; at most 8)
    .       1     context: pixels of each neighbour the transforms saw (0 = independent tiles; a multiple
                  of 16, at most 64; version 2 only, version 1 files have no such byte and mean 0)
    .       8n    per tile, raster order: payload length u32, CRC-32 of the payload u32
    .       8     if alpha: alpha length u32, CRC-32 u32
    .       8     if ICC: profile length u32 (1 B .. 1 MiB), CRC-32 u32
    .       4     CRC-32 of every header byte above
    then the n tile payloads (constriction ANS words, little-endian u32) back to back, then the alpha
    plane (a PNG of the 8-bit alpha, lossless), then the ICC profile. Readers before the ICC flag
    refuse such a file ("unknown .lic flags 0x2"); every other file is unchanged.

The header's CRC and each payload's CRC make truncation and corruption detectable before any
decoding; per-tile lengths let any tile be located and decoded alone.

This module is the container's one writer (``write``) and one reader (``parse``, ``tile_payload``,
``alpha_payload``): the quality a stream is coded at (``coded_quality``) and its deblocking radius
(``default_deblock``) are decided here, and nowhere else knows the field order.
"""
from __future__ import annotations

import itertools
import struct
import zlib
from dataclasses import dataclass, field

from service.codec.errors import BitstreamError
from service.codec.limits import CONTEXT_MULTIPLE, MAX_CONTEXT, MAX_ICC_BYTES, QUALITY_MAX, QUALITY_MIN, QUALITY_SCALE, TILE_MAX, TILE_MULTIPLE
from service.codec.tiles import TileGrid

MAGIC = b"\x89LIC"
VERSION = 2
READABLE_VERSIONS = (1, 2)
FLAG_ALPHA = 1
FLAG_ICC = 2
MODES = ("L", "LA", "RGB", "RGBA")
MAX_DIMENSION = 1 << 20
MAX_DEBLOCK = 8  # px; writers use at most 4 (default_deblock)


@dataclass
class Header:
    model_id: str
    fingerprint: bytes
    quality: float
    width: int
    height: int
    mode: str
    tile: int
    deblock: int
    context: int = 0
    tile_entries: list[tuple[int, int]] = field(default_factory=list)  # (length, crc)
    alpha_entry: tuple[int, int] | None = None
    icc_entry: tuple[int, int] | None = None
    header_size: int = 0
    offsets: list[int] = field(default_factory=list, repr=False, compare=False)  # set by parse: where each payload starts, then the alpha plane

    @property
    def grid(self) -> TileGrid:
        return TileGrid(self.width, self.height, self.tile)

    def tile_offset(self, index: int) -> int:
        if self.offsets:  # O(1): a full decode of n tiles must not cost n^2
            return self.offsets[index]
        return self.header_size + sum(length for length, _ in self.tile_entries[:index])

    @property
    def total_size(self) -> int:
        extras = sum(entry[0] for entry in (self.alpha_entry, self.icc_entry) if entry)
        return self.header_size + sum(length for length, _ in self.tile_entries) + extras


def _quality_code(quality: float) -> int:
    return int(round(quality * QUALITY_SCALE))


def coded_quality(quality: float) -> float:
    """``quality`` as the container holds it, so exactly what a decoder reads: encoders code at this one."""
    return _quality_code(quality) / QUALITY_SCALE


def default_deblock(quality: float, context: int) -> int:
    """Seam smoothing radius: for tiles coded without context, where seams show at low rates
    (measured in benchmarks/kodak_core.json); tiles coded with context need none."""
    if context:
        return 0
    return 4 if quality < 3 else 2 if quality < 5 else 0


def write(model_id: str, fingerprint: bytes, quality: float, width: int, height: int, mode: str, tile: int, context: int,
          payloads: list[bytes], alpha: bytes | None = None, deblock: int | None = None, icc: bytes | None = None) -> bytes:
    """A whole .lic file. ``quality`` must be a ``coded_quality`` (the one the payloads were coded at);
    ``deblock`` defaults to ``default_deblock``."""
    if quality != coded_quality(quality):
        raise ValueError(f"quality {quality} is not one the container can hold; code at coded_quality({quality})")
    deblock = default_deblock(quality, context) if deblock is None else deblock
    return pack(Header(model_id, fingerprint, quality, width, height, mode, tile, deblock, context), payloads, alpha, icc)


def pack(header: Header, payloads: list[bytes], alpha: bytes | None, icc: bytes | None = None) -> bytes:
    if len(payloads) != header.grid.count:
        raise ValueError(f"{len(payloads)} payloads for a grid of {header.grid.count} tiles")
    if icc is not None and not 0 < len(icc) <= MAX_ICC_BYTES:
        raise ValueError(f"an ICC profile of {len(icc)} bytes cannot be kept (1 to {MAX_ICC_BYTES} bytes)")
    model = header.model_id.encode()
    flags = (FLAG_ALPHA if alpha is not None else 0) | (FLAG_ICC if icc is not None else 0)
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", VERSION, flags, len(model)) + model
    out += header.fingerprint
    out += struct.pack("<HIIBHBB", _quality_code(header.quality), header.width, header.height, MODES.index(header.mode),
                       header.tile, header.deblock, header.context)
    for payload in payloads:
        out += struct.pack("<II", len(payload), zlib.crc32(payload))
    for extra in (alpha, icc):
        if extra is not None:
            out += struct.pack("<II", len(extra), zlib.crc32(extra))
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out) + b"".join(payloads) + (alpha or b"") + (icc or b"")


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise BitstreamError(f"truncated .lic header ({len(self.data)} bytes)")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated .lic header ({len(self.data)} bytes)")
        self.pos += n
        return self.data[self.pos - n : self.pos]


def parse(data: bytes, check_payloads: bool = True) -> Header:
    """Validate the header (and with check_payloads the size of the whole file); no pixel work."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise BitstreamError("not a .lic bitstream (bad magic)")
    r = _Reader(data)
    r.pos = 4
    version, flags, model_len = r.take("<BBB")
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"unsupported .lic format version {version} (this build reads versions 1 and 2)")
    if flags & ~(FLAG_ALPHA | FLAG_ICC):
        raise BitstreamError(f"unknown .lic flags {flags:#x}")
    try:
        model_id = r.bytes(model_len).decode()
    except UnicodeDecodeError as exc:
        raise BitstreamError("corrupted .lic header (model id)") from exc
    fingerprint = r.bytes(8)
    quality, width, height, mode, tile, deblock = r.take("<HIIBHB")
    (context,) = r.take("<B") if version >= 2 else (0,)
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION) or mode >= len(MODES):
        raise BitstreamError("corrupted .lic header (geometry)")
    has_alpha = MODES[mode].endswith("A")  # writers store an alpha plane exactly for LA and RGBA
    if has_alpha != bool(flags & FLAG_ALPHA):
        raise BitstreamError(f"corrupted .lic header (mode {MODES[mode]} {'without' if has_alpha else 'with'} an alpha plane)")
    if tile == 0 or tile % TILE_MULTIPLE or tile > TILE_MAX:  # no writer makes larger tiles: one would decode in unbounded memory
        raise BitstreamError(f"corrupted .lic header (tile of {tile} px)")
    if context % CONTEXT_MULTIPLE or context > MAX_CONTEXT:
        raise BitstreamError(f"corrupted .lic header (context of {context} px)")
    if not QUALITY_MIN <= quality / QUALITY_SCALE <= QUALITY_MAX or deblock > MAX_DEBLOCK:
        raise BitstreamError("corrupted .lic header (quality or deblocking)")
    header = Header(model_id, fingerprint, quality / QUALITY_SCALE, width, height, MODES[mode], tile, deblock, context)
    n = header.grid.count
    if len(data) - r.pos < 8 * n + 4:
        raise BitstreamError(f"truncated .lic header: {n} tiles announced, {len(data)} bytes in file")
    header.tile_entries = [r.take("<II") for _ in range(n)]
    if flags & FLAG_ALPHA:
        header.alpha_entry = r.take("<II")
        if header.alpha_entry[0] == 0:  # writers store a PNG; an empty plane would decode to an image without alpha
            raise BitstreamError("corrupted .lic header (an empty alpha plane)")
    if flags & FLAG_ICC:
        header.icc_entry = r.take("<II")
        if not 0 < header.icc_entry[0] <= MAX_ICC_BYTES:
            raise BitstreamError(f"corrupted .lic header (an ICC profile of {header.icc_entry[0]} bytes)")
    (crc,) = r.take("<I")
    if crc != zlib.crc32(data[: r.pos - 4]):
        raise BitstreamError("corrupted .lic header (checksum mismatch)")
    header.header_size = r.pos
    header.offsets = list(itertools.accumulate((length for length, _ in header.tile_entries), initial=r.pos))
    if check_payloads and len(data) != header.total_size:
        kind = "truncated" if len(data) < header.total_size else "trailing bytes after"
        raise BitstreamError(f"{kind} .lic data: expected {header.total_size} bytes, got {len(data)}")
    return header


def _checked(data: bytes, offset: int, entry: tuple[int, int], what: str) -> bytes:
    length, crc = entry
    chunk = data[offset : offset + length]
    if len(chunk) != length:
        raise BitstreamError(f"truncated .lic data in {what}")
    if zlib.crc32(chunk) != crc:
        raise BitstreamError(f"corrupted .lic data: checksum mismatch in {what}")
    return chunk


class TilePayload(bytes):
    """A tile's payload (plain bytes) that knows its tile, so the entropy decoder's errors can name it."""

    index: int


def tile_payload(data: bytes, header: Header, index: int) -> TilePayload:
    payload = TilePayload(_checked(data, header.tile_offset(index), header.tile_entries[index], f"tile {index}"))
    payload.index = index
    return payload


def alpha_payload(data: bytes, header: Header) -> bytes | None:
    if header.alpha_entry is None:
        return None
    return _checked(data, header.tile_offset(len(header.tile_entries)), header.alpha_entry, "alpha plane")


def icc_payload(data: bytes, header: Header) -> bytes | None:
    """The ICC profile kept with the image (its pixels are in that colour space), or None (sRGB)."""
    if header.icc_entry is None:
        return None
    offset = header.tile_offset(len(header.tile_entries)) + (header.alpha_entry[0] if header.alpha_entry else 0)
    return _checked(data, offset, header.icc_entry, "ICC profile")
