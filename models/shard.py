"""Draw a fresh training shard of native-scale regions that fits a leased machine's carry limit.

A lease cannot carry the training photos (166 MB as JPEG), and downscaling them to fit (the shard of
leases 1-5: 272 px short side, JPEG q84 4:2:0) shows the model texture at a scale it never codes and
chroma learned from JPEG. Instead each lease gets its own random regions of the photos, at the scale
they were taken:

- **Where.** Regions (``region`` px square, clipped to smaller photos) are drawn with probability
  proportional to each photo's area, so a 1.5 MP photo of ``train-hires/`` gives ten times the regions
  of a 0.15 MP BSDS photo, and every region of every photo is equally likely. No region is rejected
  for being flat: clean skies and walls are where the model loses to AVIF.
- **Scale.** Native, except where a JPEG source needs a downscale to hide its coding: a 4:2:0 source or
  one of estimated quality under 92 (from its luminance quantisation table) is scaled by a factor drawn
  uniformly from [0.5, 1] per region (Lanczos), so at most 2x. PNG and 4:4:4 JPEG of quality >= 92
  (``train-hires/``) stay native.
- **Storage.** JPEG quality 95 with 4:4:4 chroma (a 512 px region is about 150 KiB; lossless WebP
  would hold a fifth of the pixels). Regions are drawn until the shard fills ``budget`` bytes.
- **Fresh.** A new ``seed`` gives new regions; ``models/before_lease.sh`` takes the seed from
  ``models/gpu_lease.sh`` so no two leases train on the same shard. The trainer takes its 256 px
  patches from these regions without downscaling again (``lic train --min-scale 1``).

Usage: python -m models.shard DST SRC [SRC ...] --seed 6 --budget-mib 44 [--region 384]
"""
from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from models.data import image_files

# libjpeg's quality-50 luminance table (ITU T.81 Annex K), the reference of the IJG quality scale.
_LUMA_Q50 = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
CLEAN_QUALITY = 92  # a JPEG source at or above this quality, with 4:4:4 chroma, is used at native scale
MAX_DOWNSCALE = 2.0
STORE_QUALITY = 95


def jpeg_quality(im: Image.Image) -> float:
    """The IJG quality a JPEG's luminance table corresponds to (100 for a non-JPEG)."""
    tables = getattr(im, "quantization", None)
    if not tables:
        return 100.0
    percent = 100 * np.sum(tables[0]) / _LUMA_Q50.sum()  # IJG: table = q50 * percent / 100
    return float(100 - percent / 2 if percent <= 100 else 5000 / percent)


def needs_downscale(im: Image.Image) -> bool:
    """Whether a source's own coding would show at native scale: 4:2:0/4:2:2 chroma or a quality under CLEAN_QUALITY."""
    if im.format != "JPEG":
        return False
    return JpegImagePlugin.get_sampling(im) != 0 or jpeg_quality(im) < CLEAN_QUALITY


@dataclass(frozen=True)
class Source:
    path: Path
    width: int
    height: int
    downscale: bool

    @property
    def area(self) -> int:
        return self.width * self.height


def survey(folders: list[Path], patch: int) -> list[Source]:
    """Every photo of the folders with its size and whether it needs a downscale (headers only)."""
    sources = []
    for folder in folders:
        for path in image_files(folder):
            with Image.open(path) as im:
                sources.append(Source(path, im.width, im.height, needs_downscale(im)))
    return [s for s in sources if min(s.width, s.height) >= patch]  # photos that hold one training patch


def draw_regions(im: Image.Image, source: Source, count: int, region: int, patch: int, rng: np.random.Generator) -> list[Image.Image]:
    regions = []
    for _ in range(count):
        scale = rng.uniform(max(1 / MAX_DOWNSCALE, patch / min(im.size)), 1.0) if source.downscale else 1.0
        scaled = im if scale == 1.0 else im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        w, h = min(region, scaled.width), min(region, scaled.height)
        x, y = int(rng.integers(scaled.width - w + 1)), int(rng.integers(scaled.height - h + 1))
        regions.append(scaled.crop((x, y, x + w, y + h)))
    return regions


def pack(folders: list[Path], dst: Path, seed: int, budget: int, region: int = 384, patch: int = 256) -> dict:
    """Fill ``dst`` with area-weighted random regions of the folders' photos, at most ``budget`` bytes in all."""
    rng = np.random.default_rng(seed)
    sources = survey(folders, patch)
    weights = np.array([s.area for s in sources], dtype=float)
    # Draw 20% more regions than the budget is expected to hold, then drop random ones down to it, so
    # that no photo is favoured by the order in which they are written.
    expected = budget / (150 * 1024 * region**2 / 512**2)
    counts = rng.multinomial(int(expected * 1.2), weights / weights.sum())
    dst.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    for source, count in zip(sources, counts):
        if not count:
            continue
        with Image.open(source.path) as im:
            rgb = im.convert("RGB")
        for k, crop in enumerate(draw_regions(rgb, source, count, region, patch, rng)):
            data = io.BytesIO()
            crop.save(data, "JPEG", quality=STORE_QUALITY, subsampling=0)
            out = dst / f"{source.path.parent.name}-{source.path.stem}-{k}.jpg"
            out.write_bytes(data.getvalue())
            written.append((out, data.tell()))
    order = rng.permutation(len(written))
    total = sum(size for _, size in written)
    for i in order:
        if total <= budget:
            break
        path, size = written[i]
        path.unlink()
        total -= size
    kept = sorted(p.name for p in dst.iterdir())
    summary = {"seed": seed, "region": region, "regions": len(kept), "bytes": total,
               "photos": len({name.rsplit("-", 1)[0] for name in kept}), "of_photos": len(sources),
               "folders": [str(f) for f in folders]}
    (dst.parent / f"{dst.name}.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dst", type=Path)
    p.add_argument("src", type=Path, nargs="+")
    p.add_argument("--seed", type=int, required=True, help="a seed no earlier shard used (fresh regions)")
    p.add_argument("--budget-mib", type=float, required=True)
    p.add_argument("--region", type=int, default=384, help="side of the stored regions (patches are cut from them)")
    p.add_argument("--patch", type=int, default=256, help="training patch side: the smallest region kept")
    a = p.parse_args()
    s = pack(a.src, a.dst, a.seed, int(a.budget_mib * 2**20), a.region, a.patch)
    print(f"{s['regions']} regions of {s['photos']}/{s['of_photos']} photos, {s['bytes'] / 2**20:.1f} MiB in {a.dst}")


if __name__ == "__main__":
    main()
