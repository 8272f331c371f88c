"""Bit-exact entropy parameters: onnxruntime and PyTorch eager decode each other's bitstreams to
identical symbols (pixels within +-1), whatever the batch or thread count; on the CPU, or on the GPU of
LIC_TEST_TORCH_DEVICE (benchmarks/gpu_service.sh)."""
from pathlib import Path

import numpy as np
import pytest

from models.torch_backend import TorchBackend
from service.codec.backend import OnnxBackend
from service.codec.tile_coder import TileCoder
from service.codec.tiles import TileGrid, extract
from service.codec.zoo import DEFAULT_MODEL, load_model
from tests.conftest import TORCH_DEVICE

TINY = ["tiny-factorized", "tiny-hyperprior", "tiny-mean-scale", "tiny-coarse2fine"]


def coders(model_id: str, zoo: Path | None, threads: int | None = None) -> tuple[TileCoder, TileCoder]:
    package = load_model(model_id, zoo)
    return TileCoder(package, OnnxBackend(package, threads=threads)), TileCoder(package, TorchBackend.from_package(package, TORCH_DEVICE))


def kodak_tiles(rgb: np.ndarray, size: int = 192, count: int = 3) -> np.ndarray:
    grid = TileGrid(rgb.shape[1], rgb.shape[0], size)
    return np.stack([extract(rgb, grid.rect(i * 2 + 1), (size, size)) for i in range(count)])


def assert_cross_decode(encoder: TileCoder, decoder: TileCoder, tiles: np.ndarray, qualities: np.ndarray) -> None:
    payloads, encoded = encoder.encode(encoder.analyze(tiles), qualities)
    decoded = decoder.decode_latents(payloads, tiles.shape[2:])
    for name in encoded.symbols:
        assert np.array_equal(decoded.symbols[name], encoded.symbols[name]), name
        assert np.array_equal(decoded.values[name], encoded.values[name]), name
    a = np.rint(encoder.synthesize(encoder.synthesis_feeds(decoded, qualities)) * 255)
    b = np.rint(decoder.synthesize(decoder.synthesis_feeds(decoded, qualities)) * 255)
    assert np.max(np.abs(a - b)) <= 1


@pytest.fixture(scope="module")
def shipped():
    return coders(DEFAULT_MODEL, None)


def test_onnx_encode_torch_decode(shipped, kodim01_rgb):
    onnx, torch_ = shipped
    assert_cross_decode(onnx, torch_, kodak_tiles(kodim01_rgb), np.array([1.0, 4.5, 8.0]))


def test_torch_encode_onnx_decode(shipped, kodim01_rgb):
    onnx, torch_ = shipped
    assert_cross_decode(torch_, onnx, kodak_tiles(kodim01_rgb), np.array([2.0, 3.3, 6.0]))


@pytest.mark.parametrize("model_id", TINY)
def test_every_architecture_cross_decodes(tiny_zoo, kodim01_rgb, model_id):
    onnx, torch_ = coders(model_id, tiny_zoo)
    tiles = kodak_tiles(kodim01_rgb, size=128)
    assert_cross_decode(onnx, torch_, tiles, np.array([1.0, 5.0, 8.0]))
    assert_cross_decode(torch_, onnx, tiles, np.array([2.0, 3.5, 7.0]))


def test_batch_composition_does_not_change_symbols(shipped, kodim01_rgb):
    onnx, _ = shipped
    tiles = kodak_tiles(kodim01_rgb)
    q = np.array([1.5, 4.0, 7.5])
    payloads, _ = onnx.encode(onnx.analyze(tiles), q)
    together = onnx.decode_latents(payloads, tiles.shape[2:])
    pixels_together = onnx.synthesize(onnx.synthesis_feeds(together, q))
    for i in range(len(tiles)):
        alone = onnx.decode_latents(payloads[i : i + 1], tiles.shape[2:])
        for name in alone.symbols:
            assert np.array_equal(alone.symbols[name][0], together.symbols[name][i])
        pixels_alone = onnx.synthesize(onnx.synthesis_feeds(alone, q[i : i + 1]))
        assert np.max(np.abs(np.rint(pixels_alone[0] * 255) - np.rint(pixels_together[i] * 255))) <= 1
        # Encoded alone, the tile still decodes to exactly the symbols it was encoded with.
        single, encoded = onnx.encode(onnx.analyze(tiles[i : i + 1]), q[i : i + 1])
        redecoded = onnx.decode_latents(single, tiles.shape[2:])
        assert all(np.array_equal(redecoded.symbols[n], encoded.symbols[n]) for n in encoded.symbols)


def test_thread_count_does_not_change_hyper_outputs(kodim01_rgb):
    package = load_model(DEFAULT_MODEL)
    one, two = OnnxBackend(package, threads=1), OnnxBackend(package, threads=2)
    level = package.levels[1]
    rng = np.random.default_rng(0)
    z = rng.integers(-20, 21, (2, package.levels[0].channels, 9, 13)).astype(np.float64)
    a, b = one.run(level.hyper, {"z_hat": z}), two.run(level.hyper, {"z_hat": z})
    assert np.array_equal(a["mean"], b["mean"]) and np.array_equal(a["scale_index"], b["scale_index"])
