import numpy as np
import pytest

from service.codec import BitstreamError, entropy
from service.codec.entropy import AnsCoder, FrequencyTables, PayloadDecoder
from service.codec.zoo import load_model


@pytest.fixture(scope="module")
def gaussian_tables() -> FrequencyTables:
    return load_model("ms-64-96-r3").gaussian_tables


def roundtrip(values, ids, tables):
    coder = AnsCoder()
    entropy.encode(coder, values, ids, tables)
    payload = coder.get_compressed().astype("<u4").tobytes()
    decoder = PayloadDecoder(payload)
    out = entropy.decode(decoder, ids, tables)
    decoder.finish()
    return out, len(payload)


def test_roundtrip_random_scales(gaussian_tables):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, len(gaussian_tables), 20000)
    sigma = 0.11 * np.exp(np.log(256 / 0.11) / 63 * ids)
    values = np.rint(rng.normal(0, sigma)).astype(np.int64)
    out, nbytes = roundtrip(values, ids, gaussian_tables)
    assert np.array_equal(out, values)
    # Coding cost is close to the entropy of the quantized Gaussians (no large overhead).
    assert nbytes * 8 < 1.05 * np.sum(np.log2(sigma * np.sqrt(2 * np.pi * np.e)).clip(0.05)) + 2000


def test_escapes_cover_extreme_values(gaussian_tables):
    values = np.array([0, 32767, -32767, 500, -1, 0, 40000, -40000])
    ids = np.zeros(len(values), dtype=np.int64)
    out, _ = roundtrip(values, ids, gaussian_tables)
    assert np.array_equal(out, np.clip(values, -entropy.RAW_LIMIT, entropy.RAW_LIMIT))


def test_no_values(gaussian_tables):
    payload = payload_of(np.array([3]), np.array([5]), gaussian_tables)
    decoder = PayloadDecoder(payload)
    assert entropy.decode(decoder, np.zeros(0, dtype=np.int64), gaussian_tables).size == 0
    assert entropy.decode(decoder, np.array([5]), gaussian_tables).tolist() == [3]
    decoder.finish()


def payload_of(values, ids, tables) -> bytes:
    coder = AnsCoder()
    entropy.encode(coder, values, ids, tables)
    return coder.get_compressed().astype("<u4").tobytes()


@pytest.fixture(scope="module")
def sample(gaussian_tables):
    """A payload of 2000 values, and what decoding it needs: the values' table ids."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, len(gaussian_tables), 2000)
    values = np.rint(rng.normal(0, 0.11 * np.exp(np.log(256 / 0.11) / 63 * ids))).astype(np.int64)
    return payload_of(values, ids, gaussian_tables), ids, values


def decode_all(payload, ids, tables):
    decoder = PayloadDecoder(payload, "tile 7")
    out = entropy.decode(decoder, ids, tables)
    decoder.finish()
    return out


@pytest.mark.parametrize("forge, problem", [
    (lambda p: b"", "is empty"),
    (lambda p: p[:-2], "not whole 32-bit words"),
    (lambda p: p[:-4] + b"\0\0\0\0", "ends in a zero word"),
    (lambda p: p[: len(p) // 8 * 4], "ends before its symbols"),
    (lambda p: p[40:], "ends before its symbols"),
    (lambda p: p + b"\1\0\0\0", "after its last symbol"),
    (lambda p: b"\1\0\0\0" + p, "after its last symbol"),
    (lambda p: np.random.default_rng(0).integers(0, 256, len(p), dtype=np.uint8).tobytes(), "ends before its symbols|after its last"),
])
def test_payload_must_be_consumed_exactly(gaussian_tables, sample, forge, problem):
    """With only ``is_empty()`` checked after the last symbol, the empty and short payloads decoded: past its
    words constriction's decoder sits in the empty state and pops each table's first symbol (its minimum)
    forever. (A last word 0 made constriction raise ValueError.)"""
    payload, ids, values = sample
    assert np.array_equal(decode_all(payload, ids, gaussian_tables), values)
    with pytest.raises(BitstreamError, match=f"corrupted .lic data: tile 7 .*({problem})"):
        decode_all(forge(payload), ids, gaussian_tables)


def test_trailing_symbols_the_encoder_writes_for_free_are_accepted(gaussian_tables):
    """A table's first symbol coded into the empty coder costs no word; within the slack (32 bits of such
    symbols, each of these costs 24) the payload still counts as consumed exactly."""
    ids = np.array([3, 9, 63])  # decoded in table order: 3, 9, then 63 last
    minimum = int(gaussian_tables.minima[63])
    payload = payload_of(np.array([1, -2, minimum]), ids, gaussian_tables)
    assert decode_all(payload, ids, gaussian_tables).tolist() == [1, -2, minimum]
    two_free = np.array([3, 62, 63])
    payload = payload_of(np.array([1, int(gaussian_tables.minima[62]), minimum]), two_free, gaussian_tables)
    with pytest.raises(BitstreamError, match="ends before its symbols"):
        decode_all(payload, two_free, gaussian_tables)
