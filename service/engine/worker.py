"""Code that runs inside an inference worker process.

Each worker owns a backend on its device (onnxruntime sessions, or PyTorch with ``LIC_BACKEND=torch``;
a CUDA device when GPUs are present, CPU otherwise) and does the whole per-batch work there:
transforms, integer hyper-synthesis and ANS coding. The gateway's event loop only ships tiles in and
payloads or pixels out.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence

import numpy as np

from service.codec import Codec, Stopped
from service.codec.backend import Backend, OnnxBackend
from service.codec.image_io import Planes
from service.codec.limits import DEFAULT_QUALITY
from service.codec.tiles import TileView
from service.codec.windows import analyze_windows, synthesize_windows
from service.codec.zoo import ModelPackage
from service.core.config import Settings

_codec: Codec | None = None
_device = "cpu"
_cancelled: Sequence[int] = ()


def _onnx_providers(device: str, gpu_count: int, index: int) -> tuple[list, str]:
    import onnxruntime as ort

    use_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in ort.get_available_providers())
    if not use_cuda:
        return ["CPUExecutionProvider"], "cpu"
    gpu = index % gpu_count
    return [("CUDAExecutionProvider", {"device_id": str(gpu), "use_tf32": "0"}), "CPUExecutionProvider"], f"cuda:{gpu}"


def _backend_factory(settings: Settings, index: int) -> tuple[Callable[[ModelPackage], Backend], str]:
    """How this worker builds each model's backend, and the device it runs on."""
    threads = settings.threads()
    if settings.backend == "torch":  # PyTorch is imported only here: the default run time has no torch
        import torch

        from models.torch_backend import TorchBackend

        use_cuda = settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available())
        device = f"cuda:{index % settings.gpu_count}" if use_cuda else "cpu"
        hyper = "cpu" if settings.torch_hyper_device == "cpu" else device
        return lambda package: TorchBackend.from_package(package, device, threads, hyper), device
    # int8 twins are for the CPU's integer kernels, so LIC_TRANSFORMS=int8(-encoder) keeps the workers there
    providers, device = _onnx_providers(settings.device if settings.transforms == "fp32" else "cpu", settings.gpu_count, index)
    return lambda package: OnnxBackend(package, providers=providers, threads=threads, arena=settings.arena,
                                       transforms=settings.transforms), device


def initialize(settings: Settings, counter, cancelled) -> None:
    """Process initializer: pick a device, open sessions, warm every configured batch size.
    ``cancelled``: the shared ring of cancelled job ids (``pool.WorkerPool.run_job``)."""
    global _codec, _device, _cancelled
    _cancelled = cancelled
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    backend_factory, _device = _backend_factory(settings, index)
    _codec = Codec(
        backend_factory=backend_factory,
        tile=settings.tile, context=settings.context, max_pixels=settings.max_pixels, max_tiles=settings.max_tiles,
        max_decode_bytes=settings.max_decode_bytes, zoo=settings.model_dir,
    )
    tile, context, model = settings.tile, settings.context, settings.default_model
    view = TileView((tile, tile), (context,) * 4)  # an inner tile of a large image
    rng = np.random.default_rng(index)
    window = _codec.coder(model).package.window_bytes(*view.window)
    for batch in (b for b in settings.warmup_batches if b * window <= settings.max_decode_bytes):  # larger never run
        windows = [rng.integers(0, 256, (*view.window, 3), dtype=np.uint8) for _ in range(batch)]
        payloads, _ = encode_tiles(model, view, windows, [DEFAULT_QUALITY] * batch)
        planes, _ = decode_latents(model, (tile, tile), payloads, [DEFAULT_QUALITY] * batch)
        grown = [{name: view.grow(plane) for name, plane in tile_planes.items()} for tile_planes in planes]
        synthesize_tiles(model, view, grown, [(tile, tile)] * batch)


def ping() -> tuple[int, str]:
    return os.getpid(), _device


def encode_tiles(model: str, view: TileView, windows: list[np.ndarray], qualities: list[float]) -> tuple[list[bytes], dict]:
    """uint8 windows (h, w, 3) of tiles that share one view -> one payload per tile, and stage timings."""
    coder = _codec.coder(model)
    t0 = time.perf_counter()
    y = analyze_windows(coder, view, windows)
    t1 = time.perf_counter()
    payloads, _ = coder.encode(y, np.asarray(qualities))
    return payloads, {"analysis": t1 - t0, "entropy_encode": time.perf_counter() - t1}


def decode_latents(model: str, shape: tuple[int, int], payloads: list[bytes], qualities: list[float]) -> tuple[list[dict], dict]:
    """Payloads of one coded shape -> per tile, what the synthesis reads of it (y_hat, hyper features)."""
    coder = _codec.coder(model)
    t0 = time.perf_counter()
    feeds = coder.synthesis_feeds(coder.decode_latents(payloads, shape), np.asarray(qualities))
    per_tile = [{name: array[k] for name, array in feeds.items()} for k in range(len(payloads))]
    return per_tile, {"entropy_decode": time.perf_counter() - t0}


def synthesize_tiles(model: str, view: TileView, windows: list[dict], sizes: list[tuple[int, int]]) -> tuple[list[np.ndarray], dict]:
    """Stitched synthesis inputs of tiles that share one view -> uint8 tiles cropped to ``sizes`` (h, w)."""
    t0 = time.perf_counter()
    arrays = synthesize_windows(_codec.coder(model), view, windows, sizes)
    return arrays, {"synthesis": time.perf_counter() - t0}


def compress_image(job: int, deadline: float, model: str, planes: Planes, quality: float | None, target_bpp: float | None,
                   target_psnr: float | None, tile: int, refine: int) -> tuple[bytes, float, float | None]:
    """Whole-image compression, for rate control (several encodes of one image) or refinement (the
    image's tiles are refined together): not batched with other requests. Stops between steps once
    the wall-clock ``deadline`` (time.time()) passes or the gateway cancels ``job``."""
    def checkpoint() -> None:
        if time.time() > deadline or job in _cancelled:
            raise Stopped(f"whole-image job {job} stopped: {'cancelled' if job in _cancelled else 'deadline passed'}")

    result = _codec.compress(planes, model=model, quality=quality, target_bpp=target_bpp, target_psnr=target_psnr,
                             tile=tile, refine=refine, checkpoint=checkpoint)
    return result.data, result.quality, result.psnr
