"""``lic bench``: the whole rate-distortion and speed benchmark in one command.

    lic bench                                   # Kodak from ../shared/data/kodak -> benchmarks/kodak/
    lic bench photos/ --out out/ --codecs "WebP,AVIF" --models ms-64-96

Python API: ``benchmark(images, out)`` returns the same dict it writes to ``results.json``.

Writes to ``--out``: results.json (curves, BD-rates, per-image BD-rates of the default model, speed,
versions, machine), rows.csv (one row per image and setting), report.md (RD/BD-rate table, per-image
BD-rates against AVIF and WebP, speed table) and rd.png (PSNR and MS-SSIM against bpp, with the
published curves of ``--anchors``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from service.bench import report, runner, speed
from service.bench.codecs import BenchCodec, classical_codecs, learned_codecs, model_of
from service.codec.zoo import DEFAULT_MODEL, available_models

REPO = Path(__file__).resolve().parents[2]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "kodak"
KODAK_ANCHORS = REPO / "benchmarks" / "anchors"  # published Kodak curves (CompressAI's JSON format)
REFINE_STEPS = 40  # the default model's refined row


def select_codecs(names: list[str] | None, models: list[str] | None, refine: int = REFINE_STEPS) -> list[BenchCodec]:
    available = {**classical_codecs(), **learned_codecs(models=models, refine=refine)}
    if names is None:
        return list(available.values())
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SystemExit(f"lic bench: unknown codecs {unknown}; available: {sorted(available)}")
    return [available[n] for n in names]


def retired_rows(rows_csv: Path, images: list[runner.BenchImage]) -> list[dict]:
    """Committed rows of models that have left the zoo, kept where they cover every one of these images:
    the report keeps them as they were measured, so a release's table still shows what it replaced."""
    current = set(classical_codecs()) | set(available_models())
    by_codec: dict[str, list[dict]] = {}
    for row in runner.read_rows(rows_csv):
        if model_of(row["codec"]) not in current:
            by_codec.setdefault(row["codec"], []).append(row)
    wanted = {im.sha256 for im in images}
    return [row for rows in by_codec.values()
            if all({r["sha256"] for r in rows if r["setting"] == s} == wanted for s in {r["setting"] for r in rows})
            for row in rows]


def benchmark(
    images_dir: Path,
    out: Path,
    cache: Path | None = None,
    codec_names: list[str] | None = None,
    models: list[str] | None = None,
    anchors: Path | None = None,
    speed_images: int = 4,
    repeats: int = 3,
    progress: bool = True,
    refine: int = REFINE_STEPS,
) -> dict:
    images = runner.load_images(images_dir)
    codecs = select_codecs(codec_names, models, refine)
    rows = runner.run(codecs, images, cache or REPO / "runs" / "bench-cache" / Path(images_dir).name, progress, out / "rows.csv")
    retired = retired_rows(out / "rows.csv", images)
    rows += retired
    curves = report.mean_curves(rows)
    references = report.load_references(anchors) if anchors else {}
    bd = report.bd_table({**curves, **references})
    learned = {c.name for c in codecs if c.learned} | {row["codec"] for row in retired}
    subject = DEFAULT_MODEL if DEFAULT_MODEL in learned else next((c.name for c in codecs if c.learned), None)
    per_image = report.per_image_bd(rows, subject) if subject else []

    speed_rows = []
    if speed_images:
        timed = list(codecs)
        for codec in codecs:
            eager = speed.torch_eager(codec.name) if codec.learned else None
            if eager:
                timed.insert(timed.index(codec) + 1, eager)
        speed_rows = speed.measure_speed(timed, images[:speed_images], repeats)

    results = {
        "machine": speed.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "images": {"folder": str(images_dir), "count": len(images), "names": [im.name for im in images]},
        "codecs": {c.name: c.version for c in codecs},
        "bd_rate": "percent bitrate change at equal PSNR over the overlapping range, mean curves; "
                   "bd_rate_pchip: piecewise-cubic (current practice), bd_rate_cubic: VCEG-M33 cubic fit; negative is better",
        "curves": curves,
        "references": references,
        "bd": bd,
        "bd_per_image": {"codec": subject, "method": "pchip", "worst_first": per_image},
        "speed": {"images": [im.name for im in images[:speed_images]], "repeats": repeats, "rows": speed_rows},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.write_csv(rows, out / "rows.csv")
    title = f"{Path(images_dir).name}: {len(images)} images, {results['machine']}, {results['date']}"
    report.plot(curves, references, learned, out / "rd.png", title)
    text = (f"# Benchmark: {title}\n\n## Rate-distortion (BD-rate: PCHIP, cubic fit in brackets; negative is better)\n\n"
            + report.markdown(curves, references, bd, learned))
    if per_image and per_image[0]["bd_rate_pchip"]:
        text += "\n## Per image (BD-rate: PCHIP; negative is better)\n\n" + report.per_image_markdown(subject, per_image)
    if speed_rows:
        text += (f"\n## Speed ({len(images[:speed_images])} images, best of {repeats}, mid-rate setting)\n\n"
                 + speed.speed_markdown(speed_rows))
    (out / "report.md").write_text(text)
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lic bench", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="?", type=Path, default=DEFAULT_IMAGES, help="folder of images (default: Kodak in ../shared)")
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/<folder name>)")
    p.add_argument("--cache", type=Path, help="result cache (default runs/bench-cache/<folder name>)")
    p.add_argument("--codecs", help="comma list of codec names (default: all; see the report's first column)")
    p.add_argument("--models", help="comma list of shipped model ids (default: all)")
    p.add_argument("--anchors", type=Path, help="published curves to draw and rate (default: benchmarks/anchors for Kodak, none otherwise)")
    p.add_argument("--speed-images", type=int, default=4, help="images in the speed pass (0 skips it)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--refine", type=int, default=REFINE_STEPS,
                   help=f"also rate the default model with this many refinement steps (0: not; default {REFINE_STEPS})")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not args.images.is_dir():
        p.error(f"{args.images} is not a folder of images")
    out = args.out or REPO / "benchmarks" / args.images.name
    anchors = args.anchors or (KODAK_ANCHORS if args.images.name.lower() == "kodak" else None)
    benchmark(
        args.images, out, args.cache,
        args.codecs.split(",") if args.codecs else None,
        args.models.split(",") if args.models else None,
        anchors, args.speed_images, args.repeats, progress=not args.quiet, refine=args.refine,
    )
    print((out / "report.md").read_text())
