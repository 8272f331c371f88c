"""The HTTP service for real: uvicorn over HTTP (httpx), a real redis-server, real worker processes."""
from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from service.codec.image_io import psnr
from service.codec.quality import ms_ssim
from service.engine.cache import pack_arrays, unpack_arrays
from tests.conftest import KODIM01, png_bytes
from tests.service_harness import RedisServer, ServiceProcess
from tests.test_codec import png_claiming

LIC = {"Content-Type": "application/vnd.lic"}
PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(redis_server):
    process = ServiceProcess(LIC_REDIS_URL=redis_server.url, LIC_REDIS_RETRY_S="0.3", LIC_MAX_QUEUE_DELAY_MS="30",
                             LIC_MAX_COMPARE_PIXELS="1000000").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def strict():
    """API keys, small limits and a tiny queue."""
    process = ServiceProcess(LIC_API_KEYS="k1,k2", LIC_MAX_BODY_BYTES="200000", LIC_MAX_PIXELS="1000000",
                             LIC_MAX_QUEUE_TILES="1", LIC_TILE="128").start()
    yield process
    process.stop()


def noisy_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([128 + 100 * np.sin(xx / 37 + seed), 128 + 100 * np.cos(yy / 23), (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def roundtrip(client: httpx.Client, image_bytes: bytes, **params) -> tuple[httpx.Response, np.ndarray]:
    compressed = client.post("/compress", content=image_bytes, headers=PNG, params=params)
    assert compressed.status_code == 200, compressed.text
    out = client.post("/decompress", content=compressed.content, headers=LIC)
    assert out.status_code == 200, out.text
    return compressed, np.asarray(Image.open(io.BytesIO(out.content)))


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (512, 768)])
def test_roundtrip_sizes(service, shape):
    image = np.asarray(Image.open(KODIM01).convert("RGB"))[: shape[0], : shape[1]]
    with service.client() as client:
        compressed, out = roundtrip(client, png_bytes(np.ascontiguousarray(image)), quality=5)
    assert out.shape == image.shape
    bpp = float(compressed.headers["x-lic-bpp"])
    assert bpp == pytest.approx(len(compressed.content) * 8 / (shape[0] * shape[1]), rel=1e-4)
    if shape[0] > 100:
        assert psnr(image, out) > 26


def test_large_image_4000x3000(service):
    image = noisy_image(3000, 4000)
    with service.client(timeout=600) as client:
        compressed, out = roundtrip(client, png_bytes(image), quality=3)
    assert out.shape == image.shape and int(compressed.headers["x-lic-tiles"]) == 48
    assert psnr(image, out) > 25


def test_multipart_and_target_bpp(service, kodim01_bytes):
    with service.client() as client:
        r = client.post("/compress", files={"file": ("k.png", kodim01_bytes, "image/png")}, params={"target_bpp": 0.5})
    assert r.status_code == 200, r.text
    assert len(r.content) * 8 / (768 * 512) == pytest.approx(0.5, rel=0.03)


def test_refined_compression(service, kodim01_rgb):
    """refine=N runs the encoder-side refinement: the same quality, fewer bits for about the same
    PSNR, and a stream the plain decoder reads."""
    crop = png_bytes(np.ascontiguousarray(kodim01_rgb[128:320, 256:512]))
    with service.client(timeout=300) as client:
        plain, plain_out = roundtrip(client, crop, quality=2)
        refined, refined_out = roundtrip(client, crop, quality=2, refine=16)
        auto, _ = roundtrip(client, crop, quality=2, refine="auto")  # a small image: the most auto takes (20)
        assert client.post("/compress", content=crop, headers=PNG, params={"refine": "most"}).status_code == 400
    reference = kodim01_rgb[128:320, 256:512]
    assert refined.headers["x-lic-quality"] == plain.headers["x-lic-quality"]
    assert len(refined.content) < 0.97 * len(plain.content)
    assert psnr(reference, refined_out) > psnr(reference, plain_out) - 0.5
    assert len(auto.content) < len(refined.content)


def test_refining_a_model_without_a_hyperprior_is_a_400(tiny_zoo):
    """The zoo ships no factorized model, so this service serves the tiny ones (tests/conftest.py)."""
    process = ServiceProcess(LIC_MODEL_DIR=str(tiny_zoo), LIC_DEFAULT_MODEL="tiny-mean-scale").start()
    try:
        with process.client() as client:
            r = client.post("/compress", content=png_bytes(noisy_image(64, 64)), headers=PNG,
                            params={"refine": 4, "model": "tiny-factorized"})
    finally:
        process.stop()
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert "hyperprior" in r.json()["detail"]


def test_the_pytorch_backend_serves_the_same_codec(kodim01_rgb):
    """LIC_BACKEND=torch (GPU serving where onnxruntime has no CUDA provider; here on the CPU): the
    workers really run PyTorch, decode the golden streams to their reference pixels (+-1), and write
    streams the onnxruntime library decodes; refinement runs through autograd."""
    pytest.importorskip("torch")
    from service.codec import Codec
    from tests.test_golden import GOLDEN

    process = ServiceProcess(LIC_BACKEND="torch", LIC_DEVICE="cpu").start()
    try:
        with process.client() as client:
            assert client.get("/readyz").json()["workers"] == ["cpu"]
            for name in ("kodim01-crop-q1.5-tile128", "c2f-64-96-r7-q3-tile64"):
                r = client.post("/decompress", content=(GOLDEN / f"{name}.lic").read_bytes(), headers=LIC)
                assert r.status_code == 200, r.text
                reference = np.asarray(Image.open(GOLDEN / f"{name}.png"), dtype=np.int16)
                assert np.abs(np.asarray(Image.open(io.BytesIO(r.content)), dtype=np.int16) - reference).max() <= 1
            crop = np.ascontiguousarray(kodim01_rgb[:128, :192])
            for params in ({"quality": 5}, {"quality": 5, "refine": 2}):
                r = client.post("/compress", content=png_bytes(crop), headers=PNG, params=params)
                assert r.status_code == 200, r.text
                assert psnr(np.asarray(Codec().decompress(r.content).convert("RGB")), crop) > 28
        libraries = {pid: Path(f"/proc/{pid}/maps").read_text() for pid in descendants(process.process.pid)}
    finally:
        process.stop()
    assert any("libtorch" in maps for maps in libraries.values()), "no worker process loaded PyTorch"


def test_int8_transforms_are_served_apart_from_fp32(service, redis_server, kodim01_rgb):
    """LIC_TRANSFORMS=int8: the default's int8 twins really run (models without twins stay fp32), their
    streams decode with fp32, and their decoded tiles and ETags stay apart from fp32's in a shared Redis."""
    from service.codec import Codec

    crop = np.ascontiguousarray(kodim01_rgb[:256, :256])
    with service.client() as client:
        stream = client.post("/compress", content=png_bytes(crop), headers=PNG, params={"quality": 4}).content
        fp32 = client.post("/decompress", content=stream, headers=LIC)  # its tiles go into the shared cache
    process = ServiceProcess(LIC_TRANSFORMS="int8", LIC_REDIS_URL=redis_server.url).start()
    try:
        with process.client() as client:
            models = {m["id"]: m["transforms"] for m in client.get("/models").json()}
            int8 = client.post("/decompress", content=stream, headers=LIC)
            coded = client.post("/compress", content=png_bytes(crop), headers=PNG, params={"quality": 4})
    finally:
        process.stop()
    assert models.pop("ms-128-192-r7") == "int8" and set(models.values()) == {"fp32"}
    assert fp32.headers["x-lic-transforms"] == "fp32" and int8.headers["x-lic-transforms"] == "int8"
    assert int8.headers["etag"] != fp32.headers["etag"]
    from_fp32, from_int8 = (np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")) for r in (fp32, int8))
    assert not np.array_equal(from_fp32, from_int8)  # synthesised in int8, not fp32's tiles from the cache
    assert psnr(crop, from_int8) > psnr(crop, from_fp32) - 1.0
    assert coded.status_code == 200 and coded.headers["x-lic-transforms"] == "int8" and coded.content != stream
    assert psnr(crop, np.asarray(Codec().decompress(coded.content).convert("RGB"))) > psnr(crop, from_fp32) - 1.0


def test_int8_transforms_run_only_in_onnxruntime_on_the_cpu():
    from pydantic import ValidationError

    from service.core.config import Settings

    for transforms in ("int8", "int8-encoder"):
        for other in ({"backend": "torch"}, {"device": "cuda"}):
            with pytest.raises(ValidationError, match=f"LIC_TRANSFORMS={transforms} "):
                Settings(transforms=transforms, **other)


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (Linux /proc)."""
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in descendants(c)]


def test_concurrent_requests_are_batched_and_answered_separately(service, kodim01_rgb):
    crops = [np.ascontiguousarray(kodim01_rgb[y : y + 256, x : x + 256]) for y in (0, 256) for x in (0, 256, 512)] * 2
    before = service.metric("lic_batch_size_count", stage="encode"), service.metric("lic_batch_size_sum", stage="encode")

    def one(i: int) -> np.ndarray:
        with service.client() as client:
            return roundtrip(client, png_bytes(crops[i]), quality=4 + (i % 3))[1]

    with cf.ThreadPoolExecutor(len(crops)) as pool:
        outputs = list(pool.map(one, range(len(crops))))
    for i, out in enumerate(outputs):
        scores = [psnr(c, out) for c in crops[:6]]
        assert int(np.argmax(scores)) == i % 6  # each client got its own image back
    batches = service.metric("lic_batch_size_count", stage="encode") - before[0]
    tiles = service.metric("lic_batch_size_sum", stage="encode") - before[1]
    assert tiles == len(crops) and batches < tiles  # some batch held more than one tile


def test_repeated_and_overlapping_decodes_hit_the_cache(service, kodim01_bytes):
    def latents(result: str) -> float:
        return service.metric("lic_latent_cache_requests_total", result=result)

    with service.client() as client:
        data = client.post("/compress", content=kodim01_bytes, headers=PNG, params={"quality": 6, "tile": 256}).content
        hits, misses = service.metric("lic_tile_cache_requests_total", result="hit"), service.metric("lic_tile_cache_requests_total", result="miss")
        latent_hits, latent_misses = latents("hit"), latents("miss")
        first = client.post("/decompress", content=data, headers=LIC, params={"region": "0,0,300,200"})
        assert first.status_code == 200 and first.headers["x-lic-tiles-decoded"] == "2"
        assert service.metric("lic_tile_cache_requests_total", result="miss") - misses == 2
        assert latents("miss") - latent_misses == 6  # tiles 0 and 1 read the latents of all six 256 px tiles
        second = client.post("/decompress", content=data, headers=LIC, params={"region": "200,0,400,200"})
        assert service.metric("lic_tile_cache_requests_total", result="hit") - hits == 2  # tiles 0 and 1 again
        assert service.metric("lic_tile_cache_requests_total", result="miss") - misses == 3  # only tile 2 is new
        assert latents("hit") - latent_hits == 4 and latents("miss") - latent_misses == 6  # tile 2 reads 1, 2, 4, 5
        full = np.asarray(Image.open(io.BytesIO(client.post("/decompress", content=data, headers=LIC).content)))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(second.content))), full[0:200, 200:600])


def test_redis_down_then_back(service, redis_server, kodim01_bytes):
    with service.client() as client:
        data = client.post("/compress", content=kodim01_bytes, headers=PNG, params={"quality": 2}).content
        errors = service.metric("lic_tile_cache_requests_total", result="error")
        redis_server.stop()
        started = time.monotonic()
        assert client.post("/decompress", content=data, headers=LIC).status_code == 200
        assert time.monotonic() - started < 30
        assert service.metric("lic_tile_cache_requests_total", result="error") > errors
        redis_server.start()
        time.sleep(0.5)  # past LIC_REDIS_RETRY_S
        client.post("/decompress", content=data, headers=LIC)  # fills the fresh Redis
        hits = service.metric("lic_tile_cache_requests_total", result="hit")
        assert client.post("/decompress", content=data, headers=LIC).status_code == 200
        assert service.metric("lic_tile_cache_requests_total", result="hit") - hits == 2


@pytest.mark.parametrize(
    "path, kwargs, status",
    [
        ("/compress", {"params": {"quality": 9}}, 400),
        ("/compress", {"params": {"quality": 2, "target_bpp": 1}}, 400),
        ("/compress", {"params": {"tile": 100}}, 400),
        ("/compress", {"params": {"model": "nope"}}, 400),
        ("/compress", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
        ("/compress", {"content": b"not really a png", "headers": PNG}, 422),
        ("/compress", {"content": png_claiming(100_000, 100_000), "headers": PNG}, 413),
        ("/compress", {"content": b"", "headers": PNG}, 400),
        ("/compress", {"params": {"refine": 1000}}, 400),
        ("/decompress", {"content": b"\x89LIC garbage", "headers": LIC}, 422),
        ("/decompress", {"content": png_bytes(np.zeros((4, 4, 3), np.uint8)), "headers": {"Content-Type": "image/png"}}, 415),
        ("/decompress", {"content": b"x", "headers": {**LIC, "Accept": "text/html"}}, 406),
        ("/decompress", {"content": b"x", "headers": LIC, "params": {"format": "bmp"}}, 400),
    ],
)
def test_bad_input_gets_a_problem_response(service, kodim01_bytes, path, kwargs, status):
    kwargs.setdefault("content", kodim01_bytes)
    kwargs.setdefault("headers", PNG)
    with service.client() as client:
        r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["detail"] and "Traceback" not in r.text


def test_corrupted_and_truncated_bitstreams(service, kodim01_bytes):
    with service.client() as client:
        data = client.post("/compress", content=kodim01_bytes, headers=PNG, params={"quality": 3}).content
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x10
        for bad in (bytes(flipped), data[: len(data) // 2], data + b"\0"):
            r = client.post("/decompress", content=bad, headers=LIC)
            assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        r = client.post("/decompress", content=data, headers=LIC, params={"region": "700,500,100,100"})
        assert r.status_code == 400


def test_api_keys_limits_and_backpressure(strict, kodim01_bytes):
    small = png_bytes(np.asarray(Image.open(KODIM01).convert("RGB"))[:100, :120].copy())
    with strict.client() as client:
        assert client.post("/compress", content=small, headers=PNG).status_code == 401
        assert client.post("/compress", content=small, headers={**PNG, "Authorization": "Bearer nope"}).status_code == 403
        auth = {"Authorization": "Bearer k2"}
        assert client.post("/compress", content=small, headers={**PNG, **auth}).status_code == 200
        r = client.post("/compress", content=kodim01_bytes, headers={**PNG, **auth})
        assert r.status_code == 413  # body larger than LIC_MAX_BODY_BYTES
        r = client.post("/compress", content=png_bytes(noisy_image(300, 300)), headers={**PNG, **auth})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"  # 9 tiles > LIC_MAX_QUEUE_TILES
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200


def test_compare_codes_jpeg_webp_and_avif_at_the_highest_setting_within_the_budget(service, kodim01_bytes):
    budget = 30_000
    with service.client() as client:
        response = client.post("/compare", params={"target_bytes": budget}, content=kodim01_bytes, headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["width"], body["height"], body["target_bytes"]) == (768, 512, budget)
        assert [r["codec"] for r in body["results"]] == ["jpeg", "webp", "avif"]
        rgb = np.asarray(Image.open(io.BytesIO(kodim01_bytes)).convert("RGB"))
        for result in body["results"]:
            data = base64.b64decode(result["data"])
            assert len(data) == result["bytes"] <= budget and result["fits"], result["codec"]
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == result["media_type"].split("/")[1].upper()
                decoded = np.asarray(image.convert("RGB"))
            assert result["psnr"] == pytest.approx(psnr(rgb, decoded), abs=1e-9)
            assert result["ms_ssim"] == pytest.approx(ms_ssim(rgb, decoded), abs=1e-9)
            assert result["bpp"] == pytest.approx(len(data) * 8 / rgb[..., 0].size)
        jpeg = body["results"][0]
        one_up = io.BytesIO()
        Image.fromarray(rgb).save(one_up, "JPEG", quality=jpeg["setting"] + 1, subsampling="4:2:0")
        assert len(one_up.getvalue()) > budget  # the highest setting that fits

        tiny = client.post("/compare", params={"target_bytes": 50, "codecs": "jpeg"}, content=kodim01_bytes,
                           headers={"Content-Type": "image/png"}).json()["results"][0]
        assert not tiny["fits"] and tiny["setting"] == 1  # nothing fits: the smallest file, said so
        assert client.post("/compare", params={"target_bytes": budget, "codecs": "jpeg,gif"}, content=kodim01_bytes,
                           headers={"Content-Type": "image/png"}).status_code == 400
        assert client.post("/compare", params={"target_bytes": 0}, content=kodim01_bytes,
                           headers={"Content-Type": "image/png"}).status_code == 400
        large = client.post("/compare", params={"target_bytes": budget}, content=png_bytes(noisy_image(1024, 1024)),
                            headers={"Content-Type": "image/png"})
        assert large.status_code == 413 and "1000000" in large.json()["detail"]


def test_models_metrics_and_docs(service):
    with service.client() as client:
        models = client.get("/models").json()
        assert any(m["default"] and m["architecture"] == "mean-scale" for m in models)
        text = client.get("/metrics").text
        assert client.get("/openapi.json").status_code == 200
    for name in ("lic_requests_total", "lic_request_duration_seconds_bucket", "lic_queue_wait_seconds_bucket", "lic_batch_size_bucket",
                 "lic_inference_seconds_bucket", "lic_entropy_coding_seconds_bucket", "lic_bits_per_pixel_bucket",
                 "lic_request_bytes_total", "lic_response_bytes_total", "lic_pixels_total", "lic_tile_cache_requests_total",
                 "lic_queue_depth_tiles", "lic_in_flight_requests", "lic_workers"):
        assert name in text, name
    assert "\nlic_ready 1.0\n" in text


def test_sigterm_finishes_in_flight_requests(kodim01_bytes):
    process = ServiceProcess(LIC_DRAIN_SECONDS="1").start()
    image = png_bytes(noisy_image(1024, 1536, seed=3))

    def compress() -> int:
        with process.client() as client:
            return client.post("/compress", content=image, headers=PNG, params={"quality": 4}).status_code

    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(compress) for _ in range(4)]
        time.sleep(1.0)
        process.terminate()
        time.sleep(0.3)
        assert httpx.get(f"{process.url}/readyz", timeout=5).status_code == 503  # draining
        assert [f.result() for f in futures] == [200] * 4
    # uvicorn re-raises the captured SIGTERM once shut down, so the exit status is -SIGTERM.
    assert process.process.wait(60) in (0, -15)
    assert "Application shutdown complete" in process.stop()


def test_latent_cache_entries_roundtrip_and_garbage_is_a_miss():
    arrays = {"y_hat": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "h_s1": np.ones((1, 2, 2), np.float32)}
    back = unpack_arrays(pack_arrays(arrays))
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)
    packed = pack_arrays(arrays)
    for garbage in (b"", b"not an npz", packed[: len(packed) // 2]):
        assert unpack_arrays(garbage) is None
