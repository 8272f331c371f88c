"""Turn per-image benchmark rows into what a reader compares: mean RD curves, BD-rates against the
classical anchors, a markdown table, CSV/JSON files and an RD plot with published reference curves.

Curves are *mean* curves (bpp and PSNR averaged over the images at each setting), as CompressAI and
the published anchors report them. BD-rate integrates log-rate over PSNR with piecewise-cubic
(PCHIP) interpolation, the current practice, with the classic cubic fit (VCEG-M33) beside it.
``per_image_bd`` rates one codec on each image's own curve, to find the images it loses on.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from service.bench.bd import bd_psnr, bd_rate

BD_ANCHORS = ("JPEG 4:2:0", "WebP", "AVIF")
PER_IMAGE_ANCHORS = ("AVIF", "WebP")  # per-image table, sorted by the first
METRICS = ("bpp", "psnr", "ms_ssim", "encode_ms", "decode_ms")


def mean_curves(rows: list[dict]) -> dict[str, list[dict]]:
    """{codec: [{setting, bpp, psnr, ms_ssim, encode_ms, decode_ms}] sorted by bpp}."""
    groups: dict[str, dict[float, list[dict]]] = {}
    for row in rows:
        groups.setdefault(row["codec"], {}).setdefault(float(row["setting"]), []).append(row)
    curves = {}
    for codec, by_setting in groups.items():
        points = [{"setting": s, **{m: float(np.mean([r[m] for r in rs])) for m in METRICS}} for s, rs in by_setting.items()]
        curves[codec] = sorted(points, key=lambda p: p["bpp"])
    return curves


def load_references(folder: Path) -> dict[str, list[dict]]:
    """Published Kodak curves in CompressAI's JSON format ({name, results: {bpp, psnr-rgb, ...}})."""
    refs = {}
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        res = data["results"]
        ms = res.get("ms-ssim-rgb", [math.nan] * len(res["bpp"]))
        refs[data["name"]] = sorted(
            ({"bpp": b, "psnr": p, "ms_ssim": m} for b, p, m in zip(res["bpp"], res["psnr-rgb"], ms)), key=lambda p: p["bpp"]
        )
    return refs


def bd_table(curves: dict[str, list[dict]], anchors: tuple[str, ...] = BD_ANCHORS) -> dict[str, dict[str, dict[str, float]]]:
    """{curve: {anchor: {bd_rate_pchip, bd_rate_cubic, bd_psnr}}} in percent and dB (nan without overlap)."""

    def axes(points):
        return np.array([p["bpp"] for p in points]), np.array([p["psnr"] for p in points])

    table = {}
    for name, points in curves.items():
        rate, dist = axes(points)
        table[name] = {}
        for anchor in anchors:
            if anchor not in curves or anchor == name:
                continue
            a_rate, a_dist = axes(curves[anchor])
            table[name][anchor] = {
                "bd_rate_pchip": bd_rate(a_rate, a_dist, rate, dist, "pchip"),
                "bd_rate_cubic": bd_rate(a_rate, a_dist, rate, dist, "cubic"),
                "bd_psnr": bd_psnr(a_rate, a_dist, rate, dist, "pchip"),
            }
    return table


def per_image_bd(rows: list[dict], codec: str, anchors: tuple[str, ...] = PER_IMAGE_ANCHORS) -> list[dict]:
    """BD-rate (PCHIP) of ``codec`` against each anchor on every image's own RD curve, worst first
    (highest against the first anchor; nan, no PSNR overlap, last):
    [{image, megapixels, bd_rate_pchip: {anchor: percent}}]."""
    points: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        points.setdefault((row["codec"], row["image"]), []).append(row)

    def axes(key):
        return np.array([float(r["bpp"]) for r in points[key]]), np.array([float(r["psnr"]) for r in points[key]])

    measured = {c for c, _ in points}
    anchors = tuple(a for a in anchors if a in measured)
    table = []
    for image in dict.fromkeys(r["image"] for r in rows if r["codec"] == codec):
        first = points[(codec, image)][0]
        bd = {a: bd_rate(*axes((a, image)), *axes((codec, image))) if (a, image) in points else math.nan for a in anchors}
        table.append({"image": image, "megapixels": int(first["width"]) * int(first["height"]) / 1e6, "bd_rate_pchip": bd})
    if anchors:
        table.sort(key=lambda e: (not math.isfinite(e["bd_rate_pchip"][anchors[0]]), -e["bd_rate_pchip"][anchors[0]]))
    return table


def per_image_markdown(codec: str, table: list[dict]) -> str:
    """The per-image table, after a line saying on how many images ``codec`` wins and the median and
    mean of the per-image BD-rates (which differ from the BD-rate of the mean curves)."""
    anchors = list(table[0]["bd_rate_pchip"]) if table else []
    lines = ["| image | MP | " + " | ".join(f"BD-rate vs {a}" for a in anchors) + " |", "|" + "---|" * (2 + len(anchors))]
    lines += [f"| {e['image']} | {e['megapixels']:.2f} | " + " | ".join(_fmt(e["bd_rate_pchip"][a]) for a in anchors) + " |"
              for e in table]
    summary = []
    for a in anchors:
        values = [e["bd_rate_pchip"][a] for e in table if math.isfinite(e["bd_rate_pchip"][a])]
        if values:
            summary.append(f"vs {a}: better on {sum(v < 0 for v in values)} of {len(values)} images, "
                           f"median {_fmt(float(np.median(values)))}, mean of images {_fmt(float(np.mean(values)))}")
    return (f"{codec} against each anchor on each image's own curve (PCHIP), worst first; "
            + "; ".join(summary) + ".\n\n" + "\n".join(lines) + "\n")


def _fmt(value: float, unit: str = "%") -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.1f}{unit}" if unit == "%" else f"{value:+.2f}"


def markdown(curves: dict[str, list[dict]], references: dict[str, list[dict]], bd: dict, learned: set[str]) -> str:
    """One table: every measured curve, then the published references, with BD-rates (PCHIP, cubic
    in brackets) against each anchor, BD-PSNR against JPEG, and mean encode/decode ms per image."""
    anchors = [a for a in BD_ANCHORS if a in curves]
    head = ["codec", "bpp range", "PSNR range (dB)"] + [f"BD-rate vs {a}" for a in anchors] + ["BD-PSNR vs JPEG (dB)", "enc ms", "dec ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = sorted(curves, key=lambda n: (n not in learned, n)) + sorted(references)
    for name in ordered:
        points = curves.get(name) or references[name]
        row_bd = bd.get(name, {})
        cells = [
            f"**{name}**" if name in learned else name if name in curves else f"{name} (published)",
            f"{points[0]['bpp']:.3f}–{points[-1]['bpp']:.3f}",
            f"{min(p['psnr'] for p in points):.2f}–{max(p['psnr'] for p in points):.2f}",
        ]
        for a in anchors:
            v = row_bd.get(a)
            cells.append("–" if v is None else f"{_fmt(v['bd_rate_pchip'])} ({_fmt(v['bd_rate_cubic'])})")
        jpeg = row_bd.get("JPEG 4:2:0")
        cells.append("–" if jpeg is None else _fmt(jpeg["bd_psnr"], "dB"))
        timed = name in curves
        cells += [f"{np.mean([p['encode_ms'] for p in points]):.0f}" if timed else "–",
                  f"{np.mean([p['decode_ms'] for p in points]):.0f}" if timed else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    fields = ["codec", "version", "image", "sha256", "width", "height", "setting", "bytes", "bpp", "psnr", "ms_ssim", "encode_ms", "decode_ms"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(curves: dict[str, list[dict]], references: dict[str, list[dict]], learned: set[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_psnr, ax_ms) = plt.subplots(1, 2, figsize=(15, 6.5))
    names = list(references) + sorted(curves, key=lambda n: n in learned)
    palette = plt.get_cmap("tab20").colors
    color = {name: palette[i % len(palette)] for i, name in enumerate(names)}  # same colour in both panels
    max_bpp = max(p["bpp"] for pts in curves.values() for p in pts if p["bpp"] < 2.5)
    for name, pts in references.items():
        kept = [p for p in pts if p["bpp"] <= max_bpp * 1.05]
        for ax, key in ((ax_psnr, "psnr"), (ax_ms, "ms_ssim")):
            ys = [p[key] if key == "psnr" else -10 * math.log10(1 - p[key]) for p in kept if math.isfinite(p[key])]
            if ys:
                ax.plot([p["bpp"] for p in kept if math.isfinite(p[key])], ys, "--", lw=1, alpha=0.6, color=color[name],
                        label=f"{name} (published)")
    for name, pts in sorted(curves.items(), key=lambda kv: kv[0] in learned):
        style = {"lw": 2.4, "marker": "o", "ms": 4} if name in learned else {"lw": 1.3, "marker": ".", "ms": 5}
        for ax, key in ((ax_psnr, "psnr"), (ax_ms, "ms_ssim")):
            ys = [p[key] if key == "psnr" else -10 * math.log10(1 - p[key]) for p in pts]
            ax.plot([p["bpp"] for p in pts], ys, label=name, color=color[name], **style)
    for ax, label in ((ax_psnr, "PSNR RGB (dB)"), (ax_ms, "MS-SSIM RGB (dB: -10 log10(1 - MS-SSIM))")):
        ax.set_xlim(0, max_bpp * 1.02)
        ax.set_xlabel("bits per pixel (file bytes)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_psnr.set_ylim(bottom=24)
    ax_ms.set_ylim(bottom=8)
    ax_psnr.legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
