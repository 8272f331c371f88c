"""Evaluate a checkpoint on Kodak the way training does, and append the result to a run's log:

    .venv/bin/python -m models.evaluate runs/NAME/release.pt runs/NAME/log.jsonl --machine "H200 (leased) cuda, bf16"

For runs trained where Kodak was not at hand (a leased GPU): their log then carries the evaluation
that ``benchmarks/training_progress.py`` rates, at the checkpoint's own step and training hours.
"""
from __future__ import annotations

import argparse
import json

import torch

from models.architectures import QUALITIES
from models.release import load_checkpoint
from models.train import evaluate


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a run's last.pt or release checkpoint")
    p.add_argument("log", help="the run's log.jsonl, appended to")
    p.add_argument("--kodak", default="../shared/data/kodak")
    p.add_argument("--machine", required=True, help="where the checkpoint was trained")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, state = load_checkpoint(a.checkpoint)
    results = evaluate(model, a.kodak, [float(q) for q in range(1, QUALITIES + 1)])
    entry = {"step": state["step"], "hours": state["elapsed"] / 3600, "machine": a.machine, "eval": results}
    with open(a.log, "a") as log:
        log.write(json.dumps(entry) + "\n")
    print("  ".join(f"q{r['quality']:.0f} {r['bpp']:.3f}bpp {r['psnr']:.2f}dB" for r in results))


if __name__ == "__main__":
    main()
