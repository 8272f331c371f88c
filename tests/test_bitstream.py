import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from service.codec import bitstream
from service.codec.errors import BitstreamError


MODEL_ID = "ms-64-96-r3"


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


def as_version_1(data: bytes) -> bytes:
    """A version-2 stream of independent tiles as version 1 wrote it: no context byte, version 1, the
    header's CRC again. (Checked byte for byte against a stream version 1 wrote, while its model,
    ms-64-96-r2, was in the zoo.)"""
    header = bitstream.parse(data)
    assert header.context == 0
    at = 7 + len(header.model_id.encode()) + 8 + 14  # the context byte: after the model id, fingerprint and 14 bytes of fields
    old = bytearray(data[:at] + data[at + 1 :])
    old[4] = 1
    size = header.header_size - 1
    old[size - 4 : size] = struct.pack("<I", zlib.crc32(bytes(old[: size - 4])))
    return bytes(old)


def test_version_1_files_still_read_as_independent_tiles(codec):
    data = (Path(__file__).parent / "golden" / "ms-128-192-r7-q3-tile64.lic").read_bytes()
    old = as_version_1(data)
    assert bitstream.parse(old).context == 0 and len(old) == len(data) - 1
    assert np.array_equal(np.asarray(codec.decompress(old)), np.asarray(codec.decompress(data)))


@pytest.mark.parametrize("context", [24, 80])
def test_impossible_context_is_refused(context):
    data = bytearray(sample(context=0))
    at = data.index(MODEL_ID.encode()) + len(MODEL_ID) + 8 + 14  # after the model id, fingerprint and the 14 bytes of fields before it
    data[at] = context
    size = bitstream.parse(sample(context=0)).header_size
    data[size - 4 : size] = struct.pack("<I", zlib.crc32(bytes(data[: size - 4])))
    with pytest.raises(BitstreamError, match="context"):
        bitstream.parse(bytes(data))


def forged(field: str, value: int) -> bytes:
    """sample() with one header field rewritten and the header checksum recomputed, as an attacker would."""
    offsets = {"quality": 0, "tile": 11, "deblock": 13}  # after the fingerprint: quality u16, width u32, height u32, mode u8, tile u16, deblock u8
    data = bytearray(sample(context=0))
    at = data.index(MODEL_ID.encode()) + len(MODEL_ID) + 8 + offsets[field]
    struct.pack_into("<H" if field in ("quality", "tile") else "<B", data, at, value)
    size = bitstream.parse(sample(context=0)).header_size
    data[size - 4 : size] = struct.pack("<I", zlib.crc32(bytes(data[: size - 4])))
    return bytes(data)


@pytest.mark.parametrize("field, value", [("tile", 65472), ("tile", 4160), ("tile", 0), ("quality", 999), ("quality", 8001), ("deblock", 9)])
def test_forged_header_fields_with_valid_checksums_are_refused(field, value):
    with pytest.raises(BitstreamError, match="corrupted .lic header"):
        bitstream.parse(forged(field, value))


def test_the_writer_decides_quality_code_and_deblocking():
    q = bitstream.coded_quality(3.14159)
    assert q == 3.142
    data = bitstream.write(MODEL_ID, b"\x01" * 8, q, 1000, 400, "RGB", 512, 0, [b"a", b"b"])
    h = bitstream.parse(data)
    assert (h.quality, h.deblock, h.context) == (3.142, bitstream.default_deblock(q, 0), 0) and h.deblock > 0
    assert bitstream.parse(bitstream.write(MODEL_ID, b"\x01" * 8, q, 1000, 400, "RGB", 512, 32, [b"a", b"b"])).deblock == 0
    with pytest.raises(ValueError, match="coded_quality"):
        bitstream.write(MODEL_ID, b"\x01" * 8, 3.14159, 1000, 400, "RGB", 512, 0, [b"a", b"b"])


@pytest.mark.parametrize("mode, alpha", [("RGB", b"alpha-png"), ("L", b"alpha-png"), ("RGBA", None), ("LA", None)])
def test_mode_and_alpha_plane_go_together(mode, alpha):
    """Found by tests/fuzz_streams.py: an RGBA header without an alpha plane decoded to an RGB image."""
    header = bitstream.Header(MODEL_ID, b"\x01" * 8, 3.25, 1000, 400, mode, 512, 4, 32)
    with pytest.raises(BitstreamError, match=f"mode {mode} with"):
        bitstream.parse(bitstream.pack(header, [b"abcd", b"efgh"], alpha=alpha))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_an_empty_alpha_plane_is_refused(mode):
    """Found by benchmarks/fuzz_bitstreams.py (10 of 287,800 inputs): an alpha entry of length 0 has a valid
    CRC-32 (0), and such an RGBA stream decoded to an RGB image."""
    header = bitstream.Header(MODEL_ID, b"\x01" * 8, 3.25, 1000, 400, mode, 512, 4, 32)
    with pytest.raises(BitstreamError, match="empty alpha plane"):
        bitstream.parse(bitstream.pack(header, [b"abcd", b"efgh"], alpha=b""))


def test_an_icc_profile_rides_along_and_is_bounded():
    profile = b"profile-bytes" * 10
    data = bitstream.write(MODEL_ID, b"\x01" * 8, 3.0, 1000, 400, "RGBA", 512, 0, [b"a", b"b"], alpha=b"alpha", icc=profile)
    h = bitstream.parse(data)
    assert bitstream.icc_payload(data, h) == profile and bitstream.alpha_payload(data, h) == b"alpha"
    assert bitstream.tile_payload(data, h, 1) == b"b"
    with pytest.raises(BitstreamError, match="checksum"):
        corrupted = bytearray(data)
        corrupted[-3] ^= 1
        bitstream.icc_payload(bytes(corrupted), bitstream.parse(bytes(corrupted)))
    # A forged profile length over the bound, with a valid header checksum, is refused before reading it.
    forged = bytearray(data)
    size = h.header_size
    struct.pack_into("<I", forged, size - 12, bitstream.MAX_ICC_BYTES + 1)
    forged[size - 4 : size] = struct.pack("<I", zlib.crc32(bytes(forged[: size - 4])))
    with pytest.raises(BitstreamError, match="ICC profile"):
        bitstream.parse(bytes(forged))


def test_a_wrong_alpha_plane_is_refused_before_any_tile_is_decoded(monkeypatch):
    """A forged RGBA stream whose alpha plane is of another size (checksums valid): refused at once, not
    after the tiles' work (the fuzzer found one that decoded 982 tiles, 14 s, before the refusal)."""
    from service.codec import Codec, image_io

    data = (Path(__file__).parent / "golden" / "rgba-q8.lic").read_bytes()
    header = bitstream.parse(data)
    payloads = [bitstream.tile_payload(data, header, i) for i in range(header.grid.count)]
    wrong = image_io.encode_alpha(np.zeros((header.height + 1, header.width), np.uint8))
    forged = bitstream.pack(header, payloads, wrong)

    def no_tiles(*args, **kwargs):
        raise AssertionError("tiles decoded before the alpha plane was checked")

    monkeypatch.setattr(Codec, "decode_tiles", no_tiles)
    with pytest.raises(BitstreamError, match="alpha plane has the wrong size"):
        Codec().decompress(forged)
