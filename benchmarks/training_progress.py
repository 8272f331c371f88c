"""Training log of the zoo: Kodak BD-rate of every evaluation of every training run against the
classical codecs measured by ``lic bench``, against what training has cost: cumulative hours, leased GPU
minutes and patches seen (in 256 px patches: a 128 px patch counts a quarter).

    .venv/bin/python benchmarks/training_progress.py

``benchmarks/training/runs.json`` lists the runs (architecture, command, machine, which run each
warm-started from, and ``batches``: from which of its steps it trained at which batch and patch size);
each run's evaluations live in ``benchmarks/training/<run>-eval.jsonl`` and are refreshed from
``runs/<run>/log.jsonl`` when that exists, so this also works on a fresh clone. Training evaluations code whole images and count *estimated* bits (the likelihoods), so they sit a
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
FIT_RUNS = 3


def evaluations(run: str) -> list[dict]:
    log = REPO / "runs" / run / "log.jsonl"
    stored = TRAINING / f"{run}-eval.jsonl"
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if '"eval"' in line]
        stored.write_text("".join(line + "\n" for line in lines))
    return [json.loads(line) for line in stored.read_text().splitlines()] if stored.exists() else []


def on_gpu(meta: dict) -> bool:
    return "NVIDIA" in meta.get("machine", "")


def patches_seen(meta: dict, steps: float) -> float:
    """256 px patches a run has trained on after its first ``steps`` steps."""
    phases = meta["batches"]
    ends = [p["from_step"] for p in phases[1:]] + [float("inf")]
    return sum(max(0.0, min(steps, end) - p["from_step"]) * p["batch"] * (p["patch"] / 256) ** 2
               for p, end in zip(phases, ends))


def lineage(meta: dict) -> str:
    """Runs of one architecture at one width continue each other."""
    return f"{meta['architecture']} {meta['widths']}"


def trend(table: list[dict], runs: dict, name: str) -> dict | None:
    """Run ``name``'s lineage on the GPU: Kodak BD-rate against AVIF at the ends of its last ``FIT_RUNS``
    runs, fitted as a straight line in log2(patches seen) (returns diminish, so the latest runs say most
    about the next), and what the targets would take on that line at run ``name``'s patches per GPU minute.
    None where the lineage has fewer GPU runs."""
    ends = {r["run"]: r for r in table if on_gpu(runs[r["run"]]) and lineage(runs[r["run"]]) == lineage(runs[name])}
    if len(ends) < FIT_RUNS:
        return None
    ends = dict(list(ends.items())[-FIT_RUNS:])
    patches = np.array([r["patches"] for r in ends.values()])
    slope, intercept = np.polyfit(np.log2(patches), [r["bd_vs_AVIF"] for r in ends.values()], 1)
    last = ends[name]
    rate = patches_seen(runs[name], last["run_step"]) / (60 * last["run_hours"])
    fit = {"lineage": lineage(runs[name]), "runs": list(ends), "bd_vs_AVIF_per_doubling": slope, "intercept": intercept,
           "last": {k: last[k] for k in ("run", "patches", "gpu_minutes", "bd_vs_AVIF")}, "patches_per_gpu_minute": rate}
    for target in (-15.0, -25.0):
        needed = 2 ** ((target - intercept) / slope)
        fit[f"to {target:+.0f}% vs AVIF"] = {"patches": needed, "more_gpu_minutes": (needed - last["patches"]) / rate}
    return fit


def main() -> None:
    runs = json.loads((TRAINING / "runs.json").read_text())
    curves = json.loads((REPO / "benchmarks" / "kodak" / "results.json").read_text())["curves"]
    anchors = {a: (np.array([p["bpp"] for p in curves[a]]), np.array([p["psnr"] for p in curves[a]])) for a in ANCHORS}
    offsets: dict[str, dict] = {}  # run -> the totals it ended at, where its warm starts begin
    table = []
    for name, meta in runs.items():
        base = offsets.get(meta.get("init_from"), {"step": 0, "hours": 0.0, "gpu_minutes": 0.0, "patches": 0.0})
        evals = evaluations(name)
        row = base
        for entry in evals:
            rate = np.array([e["bpp"] for e in entry["eval"]])
            psnr = np.array([e["psnr"] for e in entry["eval"]])
            row = {
                "step": base["step"] + entry["step"], "hours": base["hours"] + entry["hours"],
                "gpu_minutes": base["gpu_minutes"] + (60 * entry["hours"] if on_gpu(meta) else 0.0),
                "patches": base["patches"] + patches_seen(meta, entry["step"]),
            }
            table.append({
                "run": name, "architecture": meta["architecture"], **row, "run_step": entry["step"], "run_hours": entry["hours"],
                "machine": entry.get("machine", meta.get("machine")),
                **{f"bd_vs_{a}": bd_rate(*anchors[a], rate, psnr) for a in ANCHORS},
            })
        offsets[name] = row

    print("| run | architecture | total steps | total hours | GPU minutes | patches seen (M) | BD-rate vs JPEG 4:2:0 | vs WebP | vs AVIF |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['run']} | {r['architecture']} | {r['step']} | {r['hours']:.2f} | {r['gpu_minutes']:.1f} | "
              f"{r['patches'] / 1e6:.2f} | " + " | ".join(f"{r[f'bd_vs_{a}']:+.1f}%" for a in ANCHORS) + " |")
    lineages = {lineage(meta): name for name, meta in runs.items() if on_gpu(meta)}  # each lineage's last GPU run
    fits = [fit for name in lineages.values() if (fit := trend(table, runs, name))]
    for fit in fits:
        print(f"\n{fit['lineage']}, the ends of its last GPU runs ({', '.join(fit['runs'])}): {fit['bd_vs_AVIF_per_doubling']:+.1f} points against "
              f"AVIF per doubling of the patches seen; {fit['last']['run']} is at {fit['last']['bd_vs_AVIF']:+.1f}% after "
              f"{fit['last']['patches'] / 1e6:.2f}M patches and {fit['last']['gpu_minutes']:.0f} GPU minutes, and took "
              f"{fit['patches_per_gpu_minute'] / 1e3:.0f}k patches a GPU minute")
        for target in ("-15", "-25"):
            need = fit[f"to {target}% vs AVIF"]
            print(f"  {target}% vs AVIF at that slope: {need['patches'] / 1e6:.0f}M patches, "
                  f"{need['more_gpu_minutes']:.0f} more GPU minutes at that rate")
    (TRAINING / "progress.json").write_text(json.dumps({"runs": runs, "evaluations": table, "trends": fits}, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_patches, by_gpu) = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    names = list(dict.fromkeys(lineage(meta) for meta in runs.values()))
    for i, name in enumerate(names):
        rows = [r for r in table if lineage(runs[r["run"]]) == name]
        gpu = [r for r in rows if on_gpu(runs[r["run"]])]
        style = dict(color=plt.get_cmap("tab10")(i % 10), marker="o", ms=4, label=name)
        by_patches.plot([r["patches"] / 1e6 for r in rows], [r["bd_vs_AVIF"] for r in rows], **style)
        if gpu:
            by_gpu.plot([r["gpu_minutes"] for r in gpu], [r["bd_vs_AVIF"] for r in gpu], **style)
        for fit in fits:
            if fit["lineage"] == name:
                far = fit["to -15% vs AVIF"]
                on_line = lambda patches: fit["intercept"] + fit["bd_vs_AVIF_per_doubling"] * np.log2(patches)
                x = np.geomspace(min(r["patches"] for r in gpu if r["run"] in fit["runs"]), far["patches"], 50)
                by_patches.plot(x / 1e6, on_line(x), ls="--", lw=0.8, color=style["color"],
                                label=f"{name}: fit to its last {FIT_RUNS} GPU runs' ends")
                by_gpu.plot([fit["last"]["gpu_minutes"], fit["last"]["gpu_minutes"] + far["more_gpu_minutes"]],
                            [on_line(fit["last"]["patches"]), -15], ls="--", lw=0.8, color=style["color"])
    for ax in (by_patches, by_gpu):
        ax.axhline(-15, color="grey", lw=0.8, ls=":", label="target: 15% under AVIF")
        ax.axhline(-25, color="grey", lw=0.8, ls="-.", label="stretch: 25% under AVIF")
        ax.grid(alpha=0.3)
    by_patches.set_ylim(-30, 130)
    if fits:  # as far as the nearest lineage's way to the target
        by_gpu.set_xlim(0, 1.3 * min(f["last"]["gpu_minutes"] + f["to -15% vs AVIF"]["more_gpu_minutes"] for f in fits))
    by_patches.set_xscale("log")
    by_patches.set_xlabel("patches seen, over warm starts (millions of 256 px patches)")
    by_patches.set_ylabel("Kodak BD-rate vs AVIF (%, PCHIP; estimated bits)")
    by_patches.legend(fontsize=7)
    by_gpu.set_xlabel("leased GPU minutes, over warm starts (H200, H100; leases 1-4 ran two runs at once)")
    fig.suptitle("Training log: each run's Kodak evaluations (dashed: the fitted trend, extrapolated to the target)")
    fig.tight_layout()
    fig.savefig(TRAINING / "progress.png", dpi=110)


if __name__ == "__main__":
    main()
