"""Training log of the zoo: Kodak BD-rate of every evaluation of every training run against the
classical codecs measured by ``lic bench``, over cumulative training hours.

    .venv/bin/python benchmarks/training_progress.py

``benchmarks/training/runs.json`` lists the runs (architecture, command, machine, which run each
warm-started from); each run's evaluations live in ``benchmarks/training/<run>-eval.jsonl`` and are
refreshed from ``runs/<run>/log.jsonl`` when that exists, so this also works on a fresh clone.
Training evaluations code whole images and count *estimated* bits (the likelihoods), so they sit a
little off the real-bytes curves of ``lic bench``; they show the trend. Writes
``benchmarks/training/progress.json`` and ``progress.png``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from service.bench.bd import bd_rate

TRAINING = REPO / "benchmarks" / "training"
ANCHORS = ("JPEG 4:2:0", "WebP", "AVIF")


def evaluations(run: str) -> list[dict]:
    log = REPO / "runs" / run / "log.jsonl"
    stored = TRAINING / f"{run}-eval.jsonl"
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if '"eval"' in line]
        stored.write_text("".join(line + "\n" for line in lines))
    return [json.loads(line) for line in stored.read_text().splitlines()] if stored.exists() else []


def main() -> None:
    runs = json.loads((TRAINING / "runs.json").read_text())
    curves = json.loads((REPO / "benchmarks" / "kodak" / "results.json").read_text())["curves"]
    anchors = {a: (np.array([p["bpp"] for p in curves[a]]), np.array([p["psnr"] for p in curves[a]])) for a in ANCHORS}
    offsets: dict[str, tuple[int, float]] = {}  # run -> (steps, hours) it started from
    table = []
    for name, meta in runs.items():
        base_steps, base_hours = offsets.get(meta.get("init_from"), (0, 0.0))
        evals = evaluations(name)
        for entry in evals:
            rate = np.array([e["bpp"] for e in entry["eval"]])
            psnr = np.array([e["psnr"] for e in entry["eval"]])
            table.append({
                "run": name, "architecture": meta["architecture"], "step": base_steps + entry["step"],
                "hours": base_hours + entry["hours"], "machine": entry.get("machine", meta.get("machine")),
                **{f"bd_vs_{a}": bd_rate(*anchors[a], rate, psnr) for a in ANCHORS},
            })
        if evals:
            offsets[name] = (base_steps + evals[-1]["step"], base_hours + evals[-1]["hours"])

    print("| run | architecture | total steps | total hours | BD-rate vs JPEG 4:2:0 | vs WebP | vs AVIF |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['run']} | {r['architecture']} | {r['step']} | {r['hours']:.2f} | "
              + " | ".join(f"{r[f'bd_vs_{a}']:+.1f}%" for a in ANCHORS) + " |")
    (TRAINING / "progress.json").write_text(json.dumps({"runs": runs, "evaluations": table}, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in runs:
        rows = [r for r in table if r["run"] == name]
        if rows:
            colour = plt.get_cmap("tab10")(list(runs).index(name) % 10)  # one colour per run: solid vs JPEG, dashed vs WebP
            tag = " (GPU)" if "NVIDIA" in runs[name].get("machine", "") else ""
            ax.plot([r["hours"] for r in rows], [r["bd_vs_JPEG 4:2:0"] for r in rows], "o-", color=colour, label=f"{name}{tag} vs JPEG")
            ax.plot([r["hours"] for r in rows], [r["bd_vs_WebP"] for r in rows], "s--", color=colour, label=f"{name}{tag} vs WebP")
    ax.axhline(-50, color="grey", lw=0.8, ls=":", label="target vs JPEG")
    ax.axhline(-20, color="grey", lw=0.8, ls="-.", label="target vs WebP")
    ax.set_xlabel("cumulative training hours (2-core CPU; runs marked GPU: leased H200)")
    ax.set_ylabel("Kodak BD-rate (%, PCHIP; estimated bits)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(TRAINING / "progress.png", dpi=110)


if __name__ == "__main__":
    main()
