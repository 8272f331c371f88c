"""schemathesis against a real `lic serve`: every operation of /openapi.json, with bounded examples, must
answer without a 5xx and as documented (status code, content type, headers, problem+json schema).

Bodies: real images of every input format and many modes (small, so the run is quick), real .lic streams
made by the server under test, damaged copies of them, and random bytes. The server runs with API keys
(schemathesis sends the Bearer key the schema's security scheme asks for, and checks that a request
without it is refused) and small limits.
"""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.openapi import IMAGE_INPUT_TYPES, LIC_INPUT_TYPES
from service.app import create_app
from tests.service_harness import ServiceProcess

KEY = "schemathesis-key"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, ignored_auth]
STREAMS: list[bytes] = []  # .lic files the server under test made (filled by the `server` fixture)

FORMATS = {"image/png": ("PNG", ["RGB", "RGBA", "L", "LA", "P", "I;16", "1"]), "image/jpeg": ("JPEG", ["RGB", "L", "CMYK"]),
           "image/webp": ("WEBP", ["RGB", "RGBA"]), "image/gif": ("GIF", ["P", "L"]), "image/bmp": ("BMP", ["RGB", "L", "1"]),
           "image/tiff": ("TIFF", ["RGB", "RGBA", "L", "CMYK", "I;16", "F"]), "application/octet-stream": ("PNG", ["RGB"])}


@st.composite
def images(draw, media: str) -> bytes:
    fmt, modes = FORMATS[media]
    mode = draw(st.sampled_from(modes))
    width, height = draw(st.integers(1, 96)), draw(st.integers(1, 96))
    pixels = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (height, width, 4), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(pixels[..., 0].astype(np.float32))
    else:
        image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def lic_streams(draw) -> bytes:
    """A stream the server made, as is, cut short or with one byte changed; or random bytes (also while
    STREAMS is still empty: schemathesis draws its coverage cases when pytest collects the test)."""
    if not STREAMS or draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=64))
    stream = draw(st.sampled_from(STREAMS))
    n, flip = draw(st.integers(0, len(stream) - 1)), draw(st.integers(1, 255))
    return draw(st.sampled_from([stream, stream[:n], stream[:n] + bytes([stream[n] ^ flip]) + stream[n + 1 :]]))


for media in IMAGE_INPUT_TYPES:
    schemathesis.openapi.media_type(media, st.one_of(images(media), st.binary(max_size=64)))
schemathesis.openapi.media_type(LIC_INPUT_TYPES[0], lic_streams(), aliases=LIC_INPUT_TYPES[1:])


# The document the app generates; test_the_live_document_is_the_one_tested proves the server serves the same.
# (schemathesis.pytest.from_fixture, which would load it from the live URL, does not run under pytest 9.2:
# it sets Node._nodeid, which pytest no longer has.)
schema = schemathesis.openapi.from_dict(create_app().openapi(), config=schemathesis.Config.from_dict(
    {"auth": {"openapi": {"HTTPBearer": {"bearer": KEY}}}}))


@pytest.fixture(scope="module")
def server():
    # Small limits keep every case quick on a busy 2-core CPU: no whole-image job above one megapixel-step.
    process = ServiceProcess(LIC_API_KEYS=KEY, LIC_MAX_PIXELS="300000", LIC_TILE="128", LIC_WARMUP_BATCHES="1",
                             LIC_MAX_WORK="1").start()
    with process.client(headers={"Authorization": f"Bearer {KEY}"}) as client:
        for shape, quality in (((40, 56, 3), 2), ((150, 200, 3), 6)):
            image = np.random.default_rng(quality).integers(0, 256, shape, dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            response = client.post("/compress", content=buffer.getvalue(), params={"quality": quality},
                                   headers={"Content-Type": "image/png"})
            assert response.status_code == 200, response.text
            STREAMS.append(response.content)
    yield process
    output = process.stop()
    assert "Traceback" not in output, output[-4000:]


@schema.parametrize()
@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api_conforms_to_its_openapi_document(server, case):
    case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=90)


def test_the_live_document_is_the_one_tested(server):
    assert httpx.get(f"{server.url}/openapi.json", timeout=10).json() == schema.raw_schema


def test_openapi_lists_bodies_statuses_and_security():
    document = schema.raw_schema
    compress, decompress = document["paths"]["/compress"]["post"], document["paths"]["/decompress"]["post"]
    assert set(compress["requestBody"]["content"]) == set(IMAGE_INPUT_TYPES) | {"multipart/form-data"}
    assert set(decompress["requestBody"]["content"]) == set(LIC_INPUT_TYPES)
    assert set(compress["responses"]) == {"200", "400", "401", "403", "408", "413", "415", "422", "503"}
    assert set(decompress["responses"]) == {"200", "304", "400", "401", "403", "406", "408", "413", "415", "422", "503"}
    for operation in (compress, decompress):
        assert operation["security"] == [{"HTTPBearer": []}]
        for status, response in operation["responses"].items():
            if int(status) >= 400:  # 200 and 304 are not problems
                assert response["content"] == {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert "HTTPValidationError" not in str(document)
    bearer = document["components"]["securitySchemes"]["HTTPBearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert document["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status", "detail", "instance"]
