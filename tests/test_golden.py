"""Committed bitstreams keep decoding to the committed symbols, and to pixels within +-1 of the
committed reference decodes, with onnxruntime and with PyTorch (on the CPU, or on the GPU of
LIC_TEST_TORCH_DEVICE)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.torch_backend import TorchBackend
from service.codec import Codec
from tests.conftest import TORCH_DEVICE
from tests.golden.make_golden import symbol_digest

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "golden.json").read_text())


@pytest.fixture(scope="module")
def torch_codec():
    return Codec(backend_factory=lambda package: TorchBackend.from_package(package, TORCH_DEVICE))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", ["onnxruntime", "pytorch"])
def test_golden_bitstream(name, backend, codec, torch_codec):
    data = (GOLDEN / f"{name}.lic").read_bytes()
    decoder = codec if backend == "onnxruntime" else torch_codec
    assert symbol_digest(decoder, data) == CASES[name]["symbols_sha256"]
    decoded = decoder.decompress(data)
    reference = Image.open(GOLDEN / f"{name}.png")
    assert decoded.mode == reference.mode == CASES[name]["mode"]
    diff = np.abs(np.asarray(decoded, dtype=np.int16) - np.asarray(reference, dtype=np.int16))
    assert diff.max() <= 1
