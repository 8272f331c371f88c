"""A classical-codec baseline with the same shape of API: POST /compress?codec=webp|avif encodes the
uploaded image with Pillow (libwebp quality 75 method 4; libavif quality 60 speed 6), and POST
/decompress decodes such a file to PNG (as the learned service's /decompress answers by default), so a
sweep of the learned service can be set beside it as a ratio.

    python loadtests/baseline_server.py --port 8100
"""
from __future__ import annotations

import argparse
import io

import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from PIL import Image

app = FastAPI(title="Pillow WebP/AVIF baseline")
SETTINGS = {"webp": {"format": "WEBP", "quality": 75, "method": 4}, "avif": {"format": "AVIF", "quality": 60, "speed": 6}}


def encode(data: bytes, codec: str) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        buffer = io.BytesIO()
        im.convert("RGB").save(buffer, **SETTINGS[codec])
    return buffer.getvalue()


@app.post("/compress")
async def compress(request: Request, codec: str = Query("webp", pattern="^(webp|avif)$")):
    body = await request.body()
    try:
        return Response(await run_in_threadpool(encode, body, codec), media_type=f"image/{codec}")
    except OSError as exc:
        raise HTTPException(422, f"cannot read image: {exc}") from exc


def decode(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as im:
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
    return buffer.getvalue()


@app.post("/decompress")
async def decompress(request: Request):
    body = await request.body()
    try:
        return Response(await run_in_threadpool(decode, body), media_type="image/png")
    except OSError as exc:
        raise HTTPException(422, f"cannot read image: {exc}") from exc


@app.get("/readyz")
async def readyz():
    return {"status": "ready"}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8100)
    uvicorn.run(app, host="127.0.0.1", port=p.parse_args().port, log_level="warning")
