"""Run codecs over a folder of images and measure each (image, setting): real bytes, bpp, PSNR and
MS-SSIM on the 8-bit RGB output, encode and decode wall time.

Results are cached per codec in ``<cache>/<codec>.jsonl``, keyed by the image's sha256 and the
setting, and tagged with the codec's version (library version or model fingerprint): a rerun only
computes what is new or changed. Rows of the same versions in the output's committed ``rows.csv``
count as cached, so a fresh checkout does not remeasure them (and rows of models that have left the
zoo stay in the report as they were measured: see ``suite.retired_rows``). Times in cached rows are those of the
run that made them; the side-by-side speed table comes from ``speed.py``, which is never cached.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from service.bench.codecs import BenchCodec
from service.codec.quality import ms_ssim, psnr

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}
INT_FIELDS = ("width", "height", "bytes")
FLOAT_FIELDS = ("setting", "bpp", "psnr", "ms_ssim", "encode_ms", "decode_ms")


@dataclass(frozen=True)
class BenchImage:
    name: str
    sha256: str
    rgb: np.ndarray

    @property
    def pixels(self) -> int:
        return self.rgb.shape[0] * self.rgb.shape[1]


def load_images(folder: Path) -> list[BenchImage]:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images in {folder}")
    images = []
    for path in paths:
        data = path.read_bytes()
        with Image.open(path) as im:
            images.append(BenchImage(path.name, hashlib.sha256(data).hexdigest(), np.asarray(im.convert("RGB"))))
    return images


def measure(codec: BenchCodec, image: BenchImage, setting: float) -> dict:
    source = Image.fromarray(image.rgb)
    t = time.perf_counter()
    data = codec.encode(source, setting)
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    decoded = codec.decode(data)
    decode_s = time.perf_counter() - t
    if decoded.shape != image.rgb.shape:
        raise RuntimeError(f"{codec.name} at {setting} decoded {image.name} to {decoded.shape}, not {image.rgb.shape}")
    return {
        "codec": codec.name, "version": codec.version, "image": image.name, "sha256": image.sha256,
        "width": image.rgb.shape[1], "height": image.rgb.shape[0], "setting": setting,
        "bytes": len(data), "bpp": len(data) * 8 / image.pixels,
        "psnr": psnr(image.rgb, decoded), "ms_ssim": ms_ssim(image.rgb, decoded),
        "encode_ms": 1000 * encode_s, "decode_ms": 1000 * decode_s,
    }


def cache_path(cache: Path, codec: BenchCodec) -> Path:
    return cache / (re.sub(r"[^A-Za-z0-9._-]+", "_", codec.name) + ".jsonl")


def _cached(path: Path, codec: BenchCodec) -> dict[tuple[str, float], dict]:
    """Rows of this codec version; rows of other versions are dropped from the file."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    current = [row for row in rows if row["version"] == codec.version]
    if len(current) < len(rows):
        path.write_text("".join(json.dumps(row) + "\n" for row in current))
    return {(row["sha256"], float(row["setting"])): row for row in current}


def read_rows(rows_csv: Path | None) -> list[dict]:
    """The rows of a committed ``rows.csv`` (none if there is none), typed as ``measure`` writes them."""
    if rows_csv is None or not rows_csv.exists():
        return []
    with rows_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.update({k: int(row[k]) for k in INT_FIELDS} | {k: float(row[k]) for k in FLOAT_FIELDS})
    return rows


def _committed(rows_csv: Path | None, codec: BenchCodec) -> dict[tuple[str, float], dict]:
    """This codec version's rows in a committed ``rows.csv``: a fresh checkout reruns only what changed."""
    rows = [row for row in read_rows(rows_csv) if row["codec"] == codec.name and row["version"] == codec.version]
    return {(row["sha256"], row["setting"]): row for row in rows}


def run(codecs: list[BenchCodec], images: list[BenchImage], cache: Path, progress: bool = True,
        committed: Path | None = None) -> list[dict]:
    """Every codec at every setting on every image; returns one row per (codec, setting, image).
    Rows come from the cache, else from ``committed`` (a previous run's rows.csv), else are measured."""
    cache.mkdir(parents=True, exist_ok=True)
    known = {codec.name: _committed(committed, codec) | _cached(cache_path(cache, codec), codec) for codec in codecs}
    todo = [
        (codec, image, float(s))
        for codec in codecs for s in codec.settings for image in images
        if (image.sha256, float(s)) not in known[codec.name]
    ]
    bar = tqdm(total=len(todo), desc="bench", unit="encode", disable=not progress or not todo, mininterval=2, dynamic_ncols=True)
    for codec, image, setting in todo:
        bar.set_postfix_str(f"{codec.name} {setting:g}", refresh=False)
        row = measure(codec, image, setting)
        known[codec.name][(image.sha256, setting)] = row
        with cache_path(cache, codec).open("a") as f:
            f.write(json.dumps(row) + "\n")
        bar.update(1)
    bar.close()
    return [known[c.name][(im.sha256, float(s))] for c in codecs for s in c.settings for im in images]
