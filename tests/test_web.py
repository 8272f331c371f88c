"""What a browser and a web developer meet, against a real server: CORS, content negotiation with
q-values, delivery formats and quality, request ids, file names, and one frame of an animation."""
from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.api.routes import negotiate
from tests.conftest import png_bytes
from tests.service_harness import ServiceProcess
from tests.test_service import PNG, noisy_image

LIC = {"Content-Type": "application/vnd.lic"}


@pytest.fixture(scope="module")
def service():
    process = ServiceProcess(LIC_API_KEYS="k", LIC_CORS_ORIGINS="*").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(service):
    with service.client(headers={"Authorization": "Bearer k"}) as c:
        yield c


@pytest.fixture(scope="module")
def stream(client) -> bytes:
    response = client.post("/compress", content=png_bytes(noisy_image(96, 128)), headers=PNG, params={"quality": 6})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="image.lic"'
    return response.content


@pytest.mark.parametrize("accept, expected", [
    ("image/webp;q=0, image/png", "PNG"), ("image/webp, image/png;q=0.5", "WEBP"), ("image/*", "PNG"),
    ("image/avif, image/*;q=0.1", "AVIF"), ("*/*;q=0.2, image/jpeg;q=0.9", "JPEG"), ("text/html", None),
    ("image/png;q=0, */*", "WEBP"), ("image/png;q=abc, image/jpeg", "JPEG"),
])
def test_accept_q_values(accept, expected):
    assert negotiate(accept) == expected


def test_preflight_and_cors_headers(service, stream):
    preflight = httpx.options(f"{service.url}/decompress", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"}, timeout=10)
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] in ("*", "https://app.example")
    response = httpx.post(f"{service.url}/decompress", content=stream, timeout=60,
                          headers={**LIC, "Origin": "https://app.example", "Authorization": "Bearer k"})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"]
    assert "X-LIC-Width" in response.headers["access-control-expose-headers"]


def test_delivery_formats_quality_and_vary(client, stream):
    sizes = {}
    for accept, fmt, params in [("image/webp;q=0, image/png", "PNG", {}), ("image/avif", "AVIF", {}),
                                ("image/webp", "WEBP", {}), ("image/webp", "WEBP", {"output_quality": 60}),
                                ("*/*", "JPEG", {"format": "jpeg", "output_quality": 50})]:
        response = client.post("/decompress", content=stream, headers={**LIC, "Accept": accept}, params=params)
        assert response.status_code == 200, response.text
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == fmt and image.size == (128, 96)
        assert "Accept" in response.headers["vary"] and response.headers["content-disposition"].startswith("inline; filename=")
        sizes[(fmt, params.get("output_quality"))] = len(response.content)
    assert sizes[("WEBP", 60)] < sizes[("WEBP", None)]  # lossy when a quality is asked for
    assert client.post("/decompress", content=stream, headers={**LIC, "Accept": "text/html"}).status_code == 406


def test_request_ids_are_echoed_when_tame(client):
    assert client.get("/models", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/models", headers={"X-Request-ID": "evil id;" * 20}).headers["x-request-id"]
    assert "evil" not in generated and len(generated) == 16


def test_one_frame_of_an_animation(client):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    gif = {"content": buffer.getvalue(), "headers": {"Content-Type": "image/gif"}}
    refused = client.post("/compress", **gif)
    assert refused.status_code == 422 and "animated image with 2 frames" in refused.json()["detail"]
    stream = client.post("/compress", params={"frame": 1, "quality": 6}, **gif)
    assert stream.status_code == 200
    image = Image.open(io.BytesIO(client.post("/decompress", content=stream.content, headers=LIC).content)).convert("RGB")
    r, g, _ = image.getpixel((32, 24))
    assert g > 100 and r < 40


def test_a_colour_profile_is_kept_on_request(client):
    profile = (Path(__file__).parent / "data" / "prophoto-like.icc").read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(noisy_image(64, 96)).save(buffer, "PNG", icc_profile=profile)
    for icc, expected in (("keep", profile), ("convert", None)):
        stream = client.post("/compress", content=buffer.getvalue(), headers=PNG, params={"icc": icc, "quality": 6})
        assert stream.status_code == 200, stream.text
        decoded = client.post("/decompress", content=stream.content, headers={**LIC, "Accept": "image/webp"})
        with Image.open(io.BytesIO(decoded.content)) as image:
            assert image.info.get("icc_profile") == expected


def test_etag_304_cache_control_and_fit_within(client, stream):
    first = client.post("/decompress", content=stream, headers={**LIC, "Accept": "image/png"}, params={"width": 64})
    assert first.status_code == 200 and first.headers["cache-control"] == "public, max-age=31536000, immutable"
    with Image.open(io.BytesIO(first.content)) as image:
        assert image.size == (64, 48)  # 128x96 fitted within width 64, aspect kept
    etag = first.headers["etag"]
    again = client.post("/decompress", content=stream, headers={**LIC, "Accept": "image/png", "If-None-Match": etag}, params={"width": 64})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = client.post("/decompress", content=stream, headers={**LIC, "Accept": "image/png", "If-None-Match": etag}, params={"width": 32})
    assert other.status_code == 200 and other.headers["etag"] != etag  # other parameters, another output
    bigger = client.post("/decompress", content=stream, headers=LIC, params={"width": 1000, "height": 1000})
    assert Image.open(io.BytesIO(bigger.content)).size == (128, 96)  # never enlarged


def test_cors_is_off_unless_configured():
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.core.config import Settings

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    closed = TestClient(create_app(Settings())).options("/compress", headers=preflight)  # routing only: no workers needed
    assert "access-control-allow-origin" not in closed.headers
    opened = TestClient(create_app(Settings(cors_origins=["https://app.example"]))).options("/compress", headers=preflight)
    assert opened.status_code == 200 and opened.headers["access-control-allow-origin"] == "https://app.example"
