"""Locust scenarios against a running service (headless, CSV):

    locust -f loadtests/locustfile.py --headless -u 16 -r 4 -t 60s --host http://127.0.0.1:8000 \\
           --csv benchmarks/locust/lic [CompressOnly CachedDecompress RegionReads MixedSizes]

* CompressOnly      POST /compress of Kodak-size photos at qualities 1..8
* CachedDecompress  decompresses a few bitstreams over and over: tile-cache hits after the first
* RegionReads       random 256x256 regions of a 12 MP bitstream (LIC_LOCUST_REGION_IMAGE=WxH): only the tiles they need
* MixedSizes        compress + decompress from 64 px thumbnails up to 12 MP, weighted toward small
"""
from __future__ import annotations

import io
import os
import random
from functools import cache
from pathlib import Path

import numpy as np
from locust import HttpUser, between, task
from PIL import Image

PHOTO = Path(__file__).resolve().parents[1] / "tests" / "data" / "kodim01.png"
PNG = {"Content-Type": "image/png"}
LIC = {"Content-Type": "application/vnd.lic"}


@cache
def photo(width: int, height: int) -> bytes:
    """The bundled Kodak photo resized (and mirrored when enlarged) to width x height, as PNG."""
    im = Image.open(PHOTO).convert("RGB")
    if width > im.width or height > im.height:
        tiled = np.asarray(im)
        reps = (-(-height // im.height), -(-width // im.width), 1)
        flips = np.concatenate([tiled, tiled[:, ::-1]], axis=1)
        tiled = np.tile(np.concatenate([flips, flips[::-1]], axis=0), (reps[0], reps[1] // 2 + 1, 1))
        im = Image.fromarray(tiled[:height, :width])
    else:
        im = im.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


class CompressOnly(HttpUser):
    wait_time = between(0, 0.2)

    @task
    def compress(self):
        self.client.post("/compress", data=photo(768, 512), headers=PNG, params={"quality": random.randint(1, 8)}, name="/compress")


class CachedDecompress(HttpUser):
    wait_time = between(0, 0.2)

    def on_start(self):
        self.bitstreams = [self.client.post("/compress", data=photo(768, 512), headers=PNG, params={"quality": q}).content for q in (2, 5)]

    @task
    def decompress(self):
        self.client.post("/decompress", data=random.choice(self.bitstreams), headers=LIC, name="/decompress (cached)")


class RegionReads(HttpUser):
    wait_time = between(0, 0.2)

    def on_start(self):
        self.size = tuple(int(v) for v in os.environ.get("LIC_LOCUST_REGION_IMAGE", "4000x3000").split("x"))
        self.bitstream = self.client.post("/compress", data=photo(*self.size), headers=PNG, params={"quality": 3}, timeout=600).content

    @task
    def region(self):
        x, y = random.randrange(0, self.size[0] - 256), random.randrange(0, self.size[1] - 256)
        self.client.post("/decompress", data=self.bitstream, headers=LIC, params={"region": f"{x},{y},256,256"}, name="/decompress?region")


class MixedSizes(HttpUser):
    wait_time = between(0, 0.5)
    SIZES = [((64, 64), 8), ((320, 240), 6), ((768, 512), 4), ((1920, 1080), 2), ((4000, 3000), 1)]

    @task
    def roundtrip(self):
        (w, h), = random.choices([s for s, _ in self.SIZES], weights=[n for _, n in self.SIZES])
        r = self.client.post("/compress", data=photo(w, h), headers=PNG, params={"quality": 4}, name=f"/compress {w}x{h}", timeout=600)
        if r.status_code == 200:
            self.client.post("/decompress", data=r.content, headers=LIC, name=f"/decompress {w}x{h}", timeout=600)
