import numpy as np
import pytest

from service.codec import entropy
from service.codec.entropy import AnsCoder, FrequencyTables
from service.codec.zoo import load_model


@pytest.fixture(scope="module")
def gaussian_tables() -> FrequencyTables:
    return load_model("ms-64-96-r2").gaussian_tables


def roundtrip(values, ids, tables):
    coder = AnsCoder()
    entropy.encode(coder, values, ids, tables)
    words = coder.get_compressed()
    decoder = AnsCoder(words)
    out = entropy.decode(decoder, ids, tables)
    assert decoder.is_empty()
    return out, words.nbytes


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


def test_empty(gaussian_tables):
    out, _ = roundtrip(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), gaussian_tables)
    assert out.size == 0
