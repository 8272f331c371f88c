"""When does the coarse-to-fine hyper path close? Checkpoints along the first steps of a run (issue 26).

A coarse-to-fine model warm-started from the default starts with its hyper-latents open (z2 a third
to nine tenths non-zero, quality 1 to 8); fitted on the CPU, they ended almost all zero, so y was coded
with one learned mean and scale per channel (docs/training.md). This rates snapshots of a run's
``last.pt`` (copied aside as it is rewritten, ``--save-minutes 1``), and any other coarse-to-fine
checkpoint (such as ``c2f-64-96-r7``, trained jointly from scratch) beside them: per quality 1, 4 and 8,
on the first 6 Kodak images, estimated bits per pixel of the rounded latents of whole images, per level
and in all, and the share of each hyper-latent's symbols that are not zero. A fine-first stage's
checkpoint (``--stage fine``) is rated as it trained: y and z2 under its own density, without z1.

    .venv/bin/python benchmarks/c2f_opening.py --label "fine stage" runs/c2f-fine-h256/snap-*.pt \
        --out benchmarks/c2f_opening.json

rates the checkpoints in the order given (a new stage counts its steps from 0), about 20 s each on 2
cores; replaces the label's rows in the JSON (the other runs stay), prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.c2f_prior import mean_budget
from models.data import image_files, load_rgb
from models.fine_first import fine_stage
from models.release import load_checkpoint

KODAK = ROOT.parent / "shared" / "data" / "kodak"
QUALITIES = (1, 4, 8)


def rate_checkpoint(path: Path, images: list[np.ndarray]) -> dict:
    model, state = load_checkpoint(path)
    model.eval()
    fine = fine_stage(model, state)
    rows = []
    for q in QUALITIES:
        levels = {lv: {"bpp": b, "nonzero": nz} for lv, (b, nz) in mean_budget(model, images, float(q), fine).items()}
        rows.append({"quality": q, "bpp": sum(v["bpp"] for v in levels.values()), "levels": levels})
    return {"path": str(path), "step": state.get("step"), "config": state.get("config"), "qualities": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--label", required=True, help="the run's name in the table and the JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "c2f_opening.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    images = [load_rgb(f) for f in image_files(KODAK)[:6]]
    report = json.loads(args.out.read_text()) if args.out.exists() else {
        "rate": "estimated bits of rounded latents, whole images, mean over the first 6 Kodak images",
        "runs": []}
    report["machine"] = f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}"
    rated = [rate_checkpoint(path, images) for path in args.checkpoints]  # as given: a new stage counts from 0
    kept = [r for r in report["runs"] if r["label"] != args.label]
    report["runs"] = kept + [{"label": args.label, **r} for r in rated]
    print(f"{args.label}: step, then per quality: bpp in all, z2 (and z1) non-zero")
    for r in rated:
        cells = []
        for row in r["qualities"]:
            hyper = " ".join(f"{lv} {v['nonzero']:5.1%}" for lv, v in row["levels"].items() if lv != "y")
            cells.append(f"q{row['quality']} {row['bpp']:.3f} {hyper}")
        print(f"{r['step']:>6}  " + " | ".join(cells))
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
