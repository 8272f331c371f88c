"""What does the native-scale shard buy? The same fine-tune of a small model on the leases' old shard
and on the new one, compared per image on Kodak and on the high-resolution photos.

    .venv/bin/python benchmarks/shard_ab.py [--steps 3000] [--model ms-64-96-r3] [--hires-limit 27]

The two arms are the two lease recipes (models/gpu_lease.sh), scaled to the CPU:

- **legacy** (leases 1-5): every photo of train/ downscaled to 0.55 of its shorter side but not under
  272 px, stored as JPEG q84 4:4:4; 16 patches of 256 px a photo, each photo first downscaled again by a
  random factor in [0.5, 1] (``lic train``'s default ``--min-scale``).
- **native** (from lease 6): models/shard.py's area-weighted 384 px regions of train/ and train-hires/
  at their native scale (JPEG q95 4:4:4), as many as fit the legacy shard's bytes; 64 patches a region,
  not downscaled again (``--min-scale 1``).

Both arms continue the same release with the same schedule, steps, batch and seed, side by side with
one thread each (``lic train`` in fp32: this CPU has no bf16 arithmetic, and autocast made a step 9x
slower; Adam, lr 1e-4 after a 200-step warm-up, cosine decay
from 30% of the steps; by the square-root rule, the leases' 3e-4 at batch 64). Then the release and
both arms are evaluated per image on Kodak and the hires photos at qualities 1, 3, 5 and 8: rate
estimated from the entropy model's likelihoods (the coded size is within about 1% of it), PSNR of the
rounded 8-bit output. BD-rates (PCHIP) per image: each arm against the release, and native against
legacy; then the means. A small model on the CPU is a proxy for what a lease's default would gain,
not a measurement of it. Prints tables and writes benchmarks/shard_ab_<steps>.json. (The committed
shard_ab_1200.json and shard_ab_3000.json continued ``ms-64-96-r2``, now in git history.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import shard
from models.data import image_files, load_rgb
from models.release import load_checkpoint, release_source
from models.train import image_points
from service.bench.bd import bd_rate
from service.bench.speed import machine

DATA = ROOT.parent / "shared" / "data"
QUALITIES = [1.0, 3.0, 5.0, 8.0]


@dataclass(frozen=True)
class Arm:
    per_image: int
    min_scale: float


ARMS = {"legacy": Arm(per_image=16, min_scale=0.5), "native": Arm(per_image=64, min_scale=1.0)}


def legacy_shard(dst: Path, src: Path) -> None:
    """The shard of leases 1-5 (``python -m models.shard SRC DST --quality 84 --scale 0.55 --min-side 272``
    before db34f08)."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in image_files(src):
        with Image.open(path) as im:
            im = im.convert("RGB")
            short = min(im.size)
            target = min(short, max(272, round(short * 0.55)))
            if target < short:
                f = target / short
                im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
            im.save(dst / f"{path.stem}.jpg", quality=84, subsampling=0)


def train_arms(work: Path, model: str, steps: int, batch: int) -> dict[str, float]:
    """Both fine-tunes at once, one thread each; wall seconds per arm."""
    procs, seconds, started = {}, {}, time.monotonic()
    shape = architecture_args(model)
    with contextlib.ExitStack() as logs:
        for name, arm in ARMS.items():
            command = [sys.executable, "-m", "models.train", *shape,
                       "--init-from", str(release_source(model)), "--data", str(work / name), "--run", str(work / "runs" / name),
                       "--patch", "256", "--batch", str(batch), "--per-image", str(arm.per_image), "--min-scale", str(arm.min_scale),
                       "--lr", "1e-4", "--warmup-steps", "200", "--decay-from", "0.3", "--steps", str(steps),
                       "--seed", "0", "--threads", "1", "--no-bf16", "--save-minutes", "10"]
            log = logs.enter_context(open(work / f"{name}.log", "w"))
            procs[name] = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        for name, proc in procs.items():
            if proc.wait():
                raise SystemExit(f"{name} arm failed: see {work / f'{name}.log'}")
            seconds[name] = time.monotonic() - started
    return seconds


def architecture_args(model: str) -> list[str]:
    """``lic train``'s --arch and --widths for the release's own architecture."""
    config = dict(load_checkpoint(release_source(model))[1]["config"])
    architecture = config.pop("architecture")
    return ["--arch", architecture, "--widths", ",".join(f"{k}={v}" for k, v in config.items())]


def curves(checkpoint: Path, folder: Path, limit: int) -> dict[str, list[tuple[float, float]]]:
    """{image: [(bpp, PSNR) per quality]}, the first ``limit`` images of the folder."""
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    return {p.name: image_points(model, load_rgb(p), QUALITIES) for p in image_files(folder)[:limit]}


def bd(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    a, t = np.array(anchor), np.array(test)
    return float(bd_rate(a[:, 0], a[:, 1], t[:, 0], t[:, 1], "pchip"))


def comparisons(points: dict[str, dict[str, list]]) -> dict[str, dict[str, float]]:
    """Per image: legacy and native against the release, native against legacy (BD-rate %)."""
    pairs = {"legacy vs release": ("release", "legacy"), "native vs release": ("release", "native"),
             "native vs legacy": ("legacy", "native")}
    return {image: {label: bd(points[a][image], points[b][image]) for label, (a, b) in pairs.items()}
            for image in points["release"]}


def summary(rows: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    labels = next(iter(rows.values())).keys()
    out = {}
    for label in labels:
        values = np.array([r[label] for r in rows.values()])
        out[label] = {"mean": float(values.mean()), "median": float(np.median(values)),
                      "better": int((values < 0).sum()), "of": len(values)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ms-64-96-r3", help="the release both arms continue")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=7, help="the native shard's regions (a seed no lease used)")
    p.add_argument("--kodak-limit", type=int, default=24)
    p.add_argument("--hires-limit", type=int, default=27)
    p.add_argument("--work", type=Path, default=Path("/tmp/shard-ab"))
    p.add_argument("--out", type=Path, help="default: benchmarks/shard_ab_<steps>.json")
    a = p.parse_args()
    a.out = a.out or ROOT / "benchmarks" / f"shard_ab_{a.steps}.json"

    a.work.mkdir(parents=True, exist_ok=True)
    if not (a.work / "legacy").exists():
        legacy_shard(a.work / "legacy", DATA / "train")
    legacy_photos = image_files(a.work / "legacy")
    legacy_bytes = sum(f.stat().st_size for f in legacy_photos)
    if not (a.work / "native").exists():
        shard.pack([DATA / "train", DATA / "train-hires"], a.work / "native", a.seed, legacy_bytes)
    native = json.loads((a.work / "native.json").read_text())
    print(f"shards: legacy {legacy_bytes / 2**20:.1f} MiB ({len(legacy_photos)} photos), "
          f"native {native['bytes'] / 2**20:.1f} MiB ({native['regions']} regions of {native['photos']} photos)")

    seconds = train_arms(a.work, a.model, a.steps, a.batch)
    print("trained: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()))

    torch.set_num_threads(os.cpu_count() or 1)
    checkpoints = {"release": release_source(a.model), **{name: a.work / "runs" / name / "last.pt" for name in ARMS}}
    sets = {"kodak": (DATA / "kodak", a.kodak_limit), "hires": (DATA / "hires", a.hires_limit)}
    results = {}
    for set_name, (folder, limit) in sets.items():
        points = {name: curves(path, folder, limit) for name, path in checkpoints.items()}
        rows = comparisons(points)
        results[set_name] = {"summary": summary(rows), "images": rows, "points": points}
        print(f"\n{set_name}: BD-rate % (PCHIP, estimated rates), per image")
        labels = list(next(iter(rows.values())))
        print("| image | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for image, row in rows.items():
            print(f"| {image} | " + " | ".join(f"{row[k]:+.2f}" for k in labels) + " |")
        for label, s in results[set_name]["summary"].items():
            print(f"{label}: mean {s['mean']:+.2f}%, median {s['median']:+.2f}%, better on {s['better']} of {s['of']}")

    a.out.write_text(json.dumps({
        "machine": machine(), "model": a.model, "steps": a.steps, "batch": a.batch, "patch": 256,
        "qualities": QUALITIES, "arms": {k: asdict(v) for k, v in ARMS.items()}, "train_seconds": seconds,
        "shards": {"legacy_bytes": legacy_bytes, "legacy_photos": len(legacy_photos), "native": native},
        **results}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
