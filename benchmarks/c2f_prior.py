"""Where the bits go when a coarse-to-fine entropy model codes the default's latents (issue 26).

The first stage of a coarse-to-fine model warm-started from the default (``lic train --arch coarse2fine
--stage entropy --init-from models/zoo/ms-128-192-r7``, models/gpu_lease.sh's stage 1) keeps the
default's g_a and gains, so the checkpoint and the default code the same y = g_a(x) * gain(q) and
differ only in their entropy models. Per level, at qualities 1, 4 and 8, on whole images: estimated
bits per pixel of the rounded latents (-log2 of the likelihoods), and the share of each hyper-latent's
symbols that are not zero (z2 has eight times the default's z symbols per pixel, so a share of z2 is
not a share of z: benchmarks/c2f_opening.py counts per pixel and what the side bits are worth to y;
docs/training.md, "What the hyper path carries"). A fine-first stage's
checkpoint (``--stage fine``, models/fine_first.py) is rated as it trained: y and z2, z2 under its own
per-channel density.

    .venv/bin/python benchmarks/c2f_prior.py runs/c2f-128-192-r0/last.pt runs/c2f-128-192-h1/last.pt

rates each checkpoint beside the default (about 1.5 minutes a model on 2 cores), prints the table and
writes benchmarks/c2f_prior.json.
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
from models.architectures import RatePass, VariableRateCodec, padding_multiple
from models.data import image_files, image_tensor, load_rgb
from models.fine_first import FineFirst, fine_stage
from models.release import load_checkpoint, release_source

REFERENCE = "ms-128-192-r7"
DATA = ROOT.parent / "shared" / "data"
QUALITIES = (1, 4, 8)
SETS = {"Kodak": (DATA / "kodak", 24), "hires (first 6)": (DATA / "hires", 6)}


def level_budget(coded: RatePass, pixels: int) -> dict[str, tuple[float, float]]:
    """Per level of a rounded rate pass: (bits per pixel, share of non-zero symbols)."""
    return {name: (b.item() / pixels, (torch.round(coded.latents[name]) != 0).float().mean().item())
            for name, b in coded.bits.items()}


@torch.no_grad()
def rate_pass(model: VariableRateCodec, rgb: np.ndarray, q: float, fine: FineFirst | None = None) -> tuple[RatePass, int]:
    """The rounded rate pass of one whole image at quality q, and its pixel count; a fine-first stage's
    model (``fine``) is rated as it trained, z2 under its own density and without z1."""
    h, w = rgb.shape[:2]
    x = image_tensor(rgb, padding_multiple(model))
    y = model.g_a(x) * model.gains(torch.tensor([q]))[0]
    stage = {"levels": fine.levels, "density": fine.density} if fine is not None else {}
    return model.rate(y, noise=False, straight_through=False, **stage), h * w


def budget(model: VariableRateCodec, rgb: np.ndarray, q: float, fine: FineFirst | None = None) -> dict[str, tuple[float, float]]:
    """``level_budget`` of one whole image at quality q (``rate_pass``)."""
    return level_budget(*rate_pass(model, rgb, q, fine))


def mean_budget(model: VariableRateCodec, images: list[np.ndarray], q: float,
                fine: FineFirst | None = None) -> dict[str, tuple[float, float]]:
    """``budget`` averaged over the images, per level."""
    per_image = [budget(model, rgb, q, fine) for rgb in images]
    return {lv: tuple(float(np.mean([im[lv][i] for im in per_image])) for i in range(2)) for lv in per_image[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", type=Path,
                   help="entropy stages' run checkpoints (coarse2fine warm-started from the default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "c2f_prior.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reference, _ = load_checkpoint(release_source(REFERENCE))
    default = reference.state_dict()
    models, checkpoints = {}, []
    for path in args.checkpoints:
        rated, state = load_checkpoint(path)
        own = rated.state_dict()
        assert all(torch.equal(own[k], default[k]) for k in default if k.startswith(("g_a.", "log_"))), f"{path}: g_a or the gains are not the default's"
        name = f"{path.parent.name} step {state['step']}"
        models[name] = (rated, fine_stage(rated, state))
        checkpoints.append({"model": name, "path": str(path), "step": state["step"], "config": state["config"],
                            "helping_loss": state["args"].get("helping_loss", 0.0)})
    models[REFERENCE] = (reference, None)
    rows = []
    width = max(map(len, models))
    print(f"{'set':16} {'q':>2} {'model':{width}} {'bpp':>7}  per level: bpp (non-zero symbols)")
    for set_name, (folder, count) in SETS.items():
        images = [load_rgb(f) for f in image_files(folder)[:count]]
        for q in QUALITIES:
            for name, (model, fine) in models.items():
                mean = mean_budget(model, images, float(q), fine)
                total = sum(b for b, _ in mean.values())
                rows.append({"set": set_name, "quality": q, "model": name, "bpp": total,
                             "levels": {lv: {"bpp": b, "nonzero": nz} for lv, (b, nz) in mean.items()}})
                text = "  ".join(f"{lv} {b:.4f}" + (f" ({nz:.0%})" if lv != "y" else "") for lv, (b, nz) in mean.items())
                print(f"{set_name:16} {q:2} {name:{width}} {total:7.4f}  {text}")
    report = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
              "checkpoints": checkpoints,
              "rate": "estimated bits of rounded latents, whole images, mean over the images", "rows": rows}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
