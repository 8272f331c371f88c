"""Code that runs inside an inference worker process.

Each worker owns onnxruntime sessions on its device (a CUDA device of its own when GPUs are present,
CPU otherwise) and does the whole per-batch work there: transforms, integer hyper-synthesis and ANS
coding. The gateway's event loop only ships tiles in and payloads or pixels out.
"""
from __future__ import annotations

import os
import time

import numpy as np

from service.codec import Codec
from service.codec.backend import OnnxBackend
from service.codec.codec import tile_array
from service.codec.image_io import Planes
from service.codec.tiles import extract

_codec: Codec | None = None
_device = "cpu"


def _providers(device: str, index: int) -> tuple[list, str]:
    import onnxruntime as ort

    use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers())
    if not use_cuda:
        return ["CPUExecutionProvider"], "cpu"
    gpu = index % int(os.environ.get("LIC_GPU_COUNT", "1"))
    return [("CUDAExecutionProvider", {"device_id": str(gpu), "use_tf32": "0"}), "CPUExecutionProvider"], f"cuda:{gpu}"


def initialize(settings: dict, counter) -> None:
    """Process initializer: pick a device, open sessions, warm every configured batch size."""
    global _codec, _device
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    providers, _device = _providers(settings["device"], index)
    threads = settings["threads"]
    _codec = Codec(
        backend_factory=lambda package: OnnxBackend(package, providers=providers, threads=threads),
        tile=settings["tile"], max_pixels=settings["max_pixels"], max_tiles=settings["max_tiles"],
    )
    tile = settings["tile"]
    rng = np.random.default_rng(index)
    for batch in settings["warmup_batches"]:
        tiles = [rng.integers(0, 256, (tile, tile, 3), dtype=np.uint8) for _ in range(batch)]
        payloads, _ = encode_tiles(settings["default_model"], (tile, tile), tiles, [4.0] * batch)
        decode_tiles(settings["default_model"], (tile, tile), payloads, [4.0] * batch)


def ping() -> tuple[int, str]:
    return os.getpid(), _device


def encode_tiles(model: str, shape: tuple[int, int], tiles: list[np.ndarray], qualities: list[float]) -> tuple[list[bytes], dict]:
    """uint8 tiles (h, w, 3), each at most ``shape`` -> one payload per tile, and stage timings."""
    coder = _codec.coder(model)
    t0 = time.perf_counter()
    y = coder.analyze(np.stack([extract(t, (0, 0, t.shape[1], t.shape[0]), shape) for t in tiles]))
    t1 = time.perf_counter()
    payloads, _ = coder.encode(y, np.asarray(qualities))
    return payloads, {"analysis": t1 - t0, "entropy_encode": time.perf_counter() - t1}


def decode_tiles(model: str, shape: tuple[int, int], payloads: list[bytes], qualities: list[float],
                 sizes: list[tuple[int, int]] | None = None) -> tuple[list[np.ndarray], dict]:
    """Payloads -> uint8 tiles cropped to ``sizes`` (h, w) (default: the full coded shape)."""
    coder = _codec.coder(model)
    t0 = time.perf_counter()
    latents = coder.decode_latents(payloads, shape)
    t1 = time.perf_counter()
    pixels = coder.synthesize(latents, np.asarray(qualities))
    t2 = time.perf_counter()
    arrays = [tile_array(p, h, w) for p, (h, w) in zip(pixels, sizes or [shape] * len(payloads))]
    return arrays, {"entropy_decode": t1 - t0, "synthesis": t2 - t1}


def compress_image(model: str, planes: Planes, target_bpp: float | None, target_psnr: float | None, tile: int) -> tuple[bytes, float, float | None, dict]:
    """Whole-image compression with rate control (several encodes of one image; not batched)."""
    result = _codec.compress(planes, model=model, target_bpp=target_bpp, target_psnr=target_psnr, tile=tile)
    return result.data, result.quality, result.psnr, result.timings
