"""Pack a folder of training photos into a compact JPEG shard that fits a remote machine's carry limit.

Each photo is downscaled (Lanczos) so its shorter side is ``scale`` of the original but never below
``min_side`` (never upscaled), then stored as 4:4:4 JPEG. Downscaling is what the patch pool does anyway,
and it also hides the source photos' own JPEG artefacts, so the re-encode costs the training little.
Usage: python -m models.shard SRC DST [--scale 0.6 --min-side 288 --quality 92]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from models.data import image_files


def pack(src: Path, dst: Path, scale: float, min_side: int, quality: int) -> int:
    dst.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in image_files(src):
        with Image.open(path) as im:
            im = im.convert("RGB")
            short = min(im.size)
            target = min(short, max(min_side, round(short * scale)))
            if target < short:
                f = target / short
                im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
            out = dst / f"{path.stem}.jpg"
            im.save(out, quality=quality, subsampling=0)
        total += out.stat().st_size
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--scale", type=float, default=0.6)
    p.add_argument("--min-side", type=int, default=288)
    p.add_argument("--quality", type=int, default=92)
    a = p.parse_args()
    total = pack(a.src, a.dst, a.scale, a.min_side, a.quality)
    print(f"{len(image_files(a.dst))} images, {total / 2**20:.1f} MiB in {a.dst}")


if __name__ == "__main__":
    main()
