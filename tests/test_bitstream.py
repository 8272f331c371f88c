import struct
import zlib
from pathlib import Path

import pytest

from service.codec import bitstream
from service.codec.errors import BitstreamError


MODEL_ID = "ms-64-96-r2"


def sample(context: int = 32) -> bytes:
    header = bitstream.Header(MODEL_ID, b"\x01" * 8, 3.25, 1000, 400, "RGBA", 512, 4, context)
    return bitstream.pack(header, [b"abcd" * 3, b"efgh"], alpha=b"alpha-png")


def test_pack_parse_roundtrip():
    data = sample()
    h = bitstream.parse(data)
    assert (h.model_id, h.quality, h.width, h.height, h.mode, h.tile, h.deblock, h.context) == (MODEL_ID, 3.25, 1000, 400, "RGBA", 512, 4, 32)
    assert h.grid.count == 2
    assert bitstream.tile_payload(data, h, 0) == b"abcd" * 3
    assert bitstream.tile_payload(data, h, 1) == b"efgh"
    assert bitstream.alpha_payload(data, h) == b"alpha-png"


@pytest.mark.parametrize("cut", [0, 3, 10, 30, -1, -5])
def test_truncated(cut):
    data = sample()
    with pytest.raises(BitstreamError):
        bitstream.parse(data[:cut])


def test_every_single_byte_corruption_is_detected():
    data = sample()
    for i in range(len(data)):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x5A
        with pytest.raises(BitstreamError):
            h = bitstream.parse(bytes(corrupted))
            for t in range(h.grid.count):
                bitstream.tile_payload(bytes(corrupted), h, t)
            bitstream.alpha_payload(bytes(corrupted), h)


def test_foreign_and_future_files():
    with pytest.raises(BitstreamError, match="not a .lic"):
        bitstream.parse(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    future = bytearray(sample())
    future[4] = 9
    with pytest.raises(BitstreamError, match="version 9"):
        bitstream.parse(bytes(future))


def test_trailing_bytes():
    with pytest.raises(BitstreamError, match="trailing"):
        bitstream.parse(sample() + b"x")


def test_version_1_files_still_read_as_independent_tiles():
    data = (Path(__file__).parent / "golden" / "ms-64-96-r2-q3-tile64.lic").read_bytes()
    assert data[4] == 1
    assert bitstream.parse(data).context == 0


@pytest.mark.parametrize("context", [24, 80])
def test_impossible_context_is_refused(context):
    data = bytearray(sample(context=0))
    at = data.index(MODEL_ID.encode()) + len(MODEL_ID) + 8 + 14  # after the model id, fingerprint and the 14 bytes of fields before it
    data[at] = context
    size = bitstream.parse(sample(context=0)).header_size
    data[size - 4 : size] = struct.pack("<I", zlib.crc32(bytes(data[: size - 4])))
    with pytest.raises(BitstreamError, match="context"):
        bitstream.parse(bytes(data))
