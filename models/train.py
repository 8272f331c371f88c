"""``lic train``: rate-distortion training of a variable-rate codec, resumable and unattended.

Loss per sample: lambda(q) * 255^2 * MSE + bpp (or lambda * (1 - MS-SSIM) scaled, with --metric ms-ssim),
with q drawn uniformly from [1, 8] so one network learns every quality and the values between.
The run directory holds ``last.pt`` (weights, optimiser, step, elapsed time; written atomically every
few minutes) and ``log.jsonl`` (training and Kodak evaluation records). Re-running the same command
resumes; changing --steps on resume re-plans the learning-rate decay. With --minutes the schedule runs
on training time instead (whichever of steps and minutes is further along), which is how a leased GPU
session with a fixed budget is spent: the run ends by itself, decayed, inside the lease. --stop-minutes
ends one invocation early without re-planning, so a budget split over two calls follows one schedule.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from models.architectures import QUALITIES, VariableRateCodec, build, lambda_for_quality, padding_multiple
from models.data import PatchPool, image_files, image_tensor, load_rgb
from models.fine_first import CHECKPOINT_KEY as FINE_DENSITY
from models.fine_first import FineFirst, seed_coarse_level
from models.hyper_projections import HyperProjections
from models.ms_ssim import ms_ssim
from models.release import load_checkpoint, release_checkpoint, save_atomic
from models.warm_start import warm_start


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default="mean-scale", help="factorized | hyperprior | mean-scale | coarse2fine")
    p.add_argument("--widths", default="n=64,m=96", help="comma list, e.g. n=64,m=96 or n=64,m=96,h2=64,h1=32")
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--eval-dir", help="folder of evaluation images (Kodak)")
    p.add_argument("--run", required=True, help="run directory (checkpoints, logs); resumes if it exists")
    p.add_argument("--init-from", help="warm start from a checkpoint or released package (when the run is new): every tensor whose name and shape match")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=30000)
    p.add_argument("--minutes", type=float, help="training-time budget; the lr schedule and the run end by it")
    p.add_argument("--stop-minutes", type=float,
                   help="stop this invocation (checkpointed) at this much training time, leaving the schedule as planned; resume to go on")
    p.add_argument("--decay-from", type=float, default=0.7, help="fraction of steps after which lr decays (cosine to 2%%)")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="ramp lr up linearly over a new run's first steps (a warm start's fresh Adam state otherwise jolts it)")
    p.add_argument("--metric", choices=["mse", "ms-ssim"], default="mse")
    p.add_argument("--stage", choices=["all", "entropy", "fine"], default="all",
                   help="entropy: train only the entropy model, on the rate of the frozen g_a's latents, without "
                   "running the synthesis (fits a new entropy model to a warm-started transform, cheaply); fine: "
                   "the same for coarse2fine's fine level alone, z1 left out (models/fine_first.py), which a "
                   "later run warm-started from it adds")
    p.add_argument("--helping-loss", type=float, default=0.0,
                   help="weight of the coarse-to-fine paper's helping losses (each hyper level's features must predict "
                   "the latent below it, models/hyper_projections.py); 0: off")
    p.add_argument("--per-image", type=int, default=24, help="patches drawn per training image")
    p.add_argument("--min-scale", type=float, default=0.5,
                   help="each image is downscaled by a random factor in [min-scale, 1] first (1: a native-scale shard, models/shard.py)")
    p.add_argument("--eval-every", type=int, default=3000)
    p.add_argument("--save-minutes", type=float, default=5.0)
    p.add_argument("--release-to", help="with every save, also write the fp16 release checkpoint here "
                   "(a leased GPU cut off by its budget still hands back its latest weights)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast of the transforms")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (its first step compiles, on the training clock); eager if that fails")


def parse_widths(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(",") if item)}


def progress(step: int, elapsed: float, args: argparse.Namespace) -> float:
    """Fraction of the run done: by steps, or by training time when --minutes is given."""
    done = step / args.steps
    return max(done, elapsed / (args.minutes * 60)) if args.minutes else done


def learning_rate(fraction: float, step: int, args: argparse.Namespace) -> float:
    warmup = min(1.0, (step + 1) / args.warmup_steps) if args.warmup_steps else 1.0
    if fraction < args.decay_from:
        return args.lr * warmup
    decay = min(1.0, (fraction - args.decay_from) / max(1e-9, 1 - args.decay_from))
    return args.lr * warmup * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * decay)))


def distortion_term(x_hat: torch.Tensor, x: torch.Tensor, lam: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    mse = F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(1)
    if metric == "mse":
        return lam * 255**2 * mse, mse
    # CompressAI's MS-SSIM lambdas are ~1200x its MSE ones: lambda*255^2/50 puts q1..8 at 2.3..235.
    return lam * 255**2 / 50 * (1 - ms_ssim(x_hat.clamp(0, 1), x)), mse


@torch.no_grad()
def rd_loss(model: torch.nn.Module, patches: np.ndarray, quality: float, batch: int = 16) -> float:
    """The training objective on rounded latents (distortion term + estimated bpp), mean over (N, H, W, 3) uint8 patches."""
    total = 0.0
    for i in range(0, len(patches), batch):
        x = torch.from_numpy(np.ascontiguousarray(patches[i : i + batch])).permute(0, 3, 1, 2).float() / 255
        q = torch.full((len(x),), quality)
        out = model(x, q, noise=False)
        distortion, _ = distortion_term(out["x_hat"].clamp(0, 1), x, lambda_for_quality(q), "mse")
        total += (distortion + out["bits"] / (x.shape[2] * x.shape[3])).sum().item()
    return total / len(patches)


def backward_step(net: Callable[..., dict], optimizer: torch.optim.Optimizer, x: torch.Tensor, q: torch.Tensor,
                  metric: str, autocast: torch.autocast, synthesize: bool = True,
                  helping: HyperProjections | None = None, helping_weight: float = 0.0) -> tuple[torch.Tensor, ...]:
    """Gradients of the rate-distortion loss of one batch (the rate alone without synthesis), plus
    ``helping_weight`` times the helping losses where ``helping`` is given; returns the loss, bpp and
    MSE (NaN without synthesis) per sample, and the helping losses (0 without)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast:
        out = net(x, q, synthesize=synthesize)
    bpp = out["bits"] / (x.shape[2] * x.shape[3])
    if synthesize:
        dist, mse = distortion_term(out["x_hat"].float(), x, lambda_for_quality(q), metric)
    else:
        dist, mse = torch.zeros_like(bpp), torch.full_like(bpp, math.nan)
    aid = helping(out["latents"], out["features"]) if helping is not None else torch.zeros((), device=x.device)
    loss = (dist + bpp).mean() + helping_weight * aid
    loss.backward()
    return loss.detach(), bpp.detach(), mse.detach(), aid.detach()


@torch.no_grad()
def image_points(model: VariableRateCodec, rgb: np.ndarray, qualities: list[float]) -> list[tuple[float, float]]:
    """(estimated bpp from likelihoods, PSNR of the rounded 8-bit output) of one (H, W, 3) image, per quality."""
    h, w = rgb.shape[:2]
    xp = image_tensor(rgb, padding_multiple(model))
    x = xp[..., :h, :w]
    points = []
    for q in qualities:
        out = model(xp, torch.tensor([q]), noise=False)
        x_hat = (out["x_hat"][..., :h, :w].float().clamp(0, 1) * 255).round() / 255
        mse = F.mse_loss(x_hat, x).item()
        points.append((out["bits"].item() / (h * w), 10 * math.log10(1 / max(mse, 1e-12))))
    return points


def evaluate(model: VariableRateCodec, folder: str, qualities: list[float]) -> list[dict]:
    """Estimated bpp and PSNR (``image_points``), mean over the folder."""
    model.eval()
    files = image_files(folder)
    totals = np.zeros((len(qualities), 2))
    for path in files:
        totals += np.array(image_points(model, load_rgb(path), qualities)) / len(files)
    model.train()
    return [{"quality": q, "bpp": bpp, "psnr": psnr} for q, (bpp, psnr) in zip(qualities, totals.tolist())]


def run(args: argparse.Namespace) -> None:
    if args.stage == "fine" and args.eval_dir:
        raise SystemExit("--stage fine: the model has no coarse level yet, so there is nothing to evaluate (drop --eval-dir)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = Path(args.run)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"architecture": args.arch, **parse_widths(args.widths)}
    model = build(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick the fastest kernels once
    model.to(device).to(memory_format=torch.channels_last)
    fine = FineFirst(model).to(device) if args.stage == "fine" else None
    if fine is not None:
        trained = fine.trained_parameters()
    elif args.stage == "entropy":
        trained = model.entropy_parameters()
    else:
        trained = list(model.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in {id(t) for t in trained})
    helping = HyperProjections(model).to(device) if args.helping_loss > 0 else None
    if helping is not None:
        trained += list(helping.parameters())
    optimizer = torch.optim.Adam(trained, lr=args.lr)
    synthesize = args.stage == "all"
    net = fine if fine is not None else model  # what a step runs; `model` is what is saved and evaluated
    state_path = run_dir / "last.pt"
    step, elapsed = 0, 0.0
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        if helping is not None:
            helping.load_state_dict(state["projections"])
        if fine is not None:
            fine.density.load_state_dict(state[FINE_DENSITY])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed = state["step"], state["elapsed"]
        args.init_from = args.init_from or state["args"].get("init_from")  # the lineage survives resumes
        print(f"resumed {state_path} at step {step} ({elapsed / 3600:.2f} h trained)")
    elif args.init_from:
        source, state = load_checkpoint(args.init_from)
        copied, widened = warm_start(model, {k: v.to(device) for k, v in source.state_dict().items()}, state["config"])
        print(f"warm start from {args.init_from} (its step {state.get('step')}): {copied} tensors copied, {widened} widened, of {len(model.state_dict())}")
        if FINE_DENSITY in state and fine is None:
            seed_coarse_level(model, state[FINE_DENSITY])
            print("coarse level z1 added: h_s1 starts as the fine-first stage's density of z2")

    # Compiling fuses the many small element-wise operators (GDN, entropy models), whose launches take
    # most of a GPU step at these sizes (estimated in gpu_lease.sh).
    step_model = torch.compile(net) if args.compile else net
    pool = PatchPool(args.data, args.patch, args.per_image, args.seed, run_dir.parent / ".cache", args.min_scale)
    if device.type != "cpu":
        pool.keep_on(device)
    rng = np.random.default_rng(args.seed + step)
    # bf16 on CPU and GPU alike: same numerics everywhere, and no loss scaling needed.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.no_bf16)
    log = open(run_dir / "log.jsonl", "a")
    machine = f"{platform.node()} {platform.processor() or platform.machine()} x{args.threads} {device.type}"
    last_save = time.monotonic()
    t_prev = time.monotonic()
    bar = tqdm(total=None if args.minutes else args.steps, initial=step, mininterval=20, dynamic_ncols=True)
    stats, seen = np.zeros(4), 0  # running means of loss/bpp/PSNR/helping losses, sampled every 10 steps
    model.train()

    def done() -> bool:
        return progress(step, elapsed, args) >= 1 or (args.stop_minutes is not None and elapsed >= args.stop_minutes * 60)

    while not done():
        lr = learning_rate(progress(step, elapsed, args), step, args)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = pool.batch(args.batch, rng, device)
        q = torch.empty(args.batch, device=device).uniform_(1, QUALITIES)
        try:
            loss, bpp, mse, aid = backward_step(step_model, optimizer, x, q, args.metric, autocast, synthesize, helping, args.helping_loss)
        except Exception as error:  # the compiler fails on this machine: a leased GPU's minutes go on eagerly
            if step_model is net:
                raise
            tqdm.write(f"torch.compile failed ({type(error).__name__}: {error}); training eagerly")
            step_model = net
            loss, bpp, mse, aid = backward_step(net, optimizer, x, q, args.metric, autocast, synthesize, helping, args.helping_loss)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        step = step + 1
        now = time.monotonic()
        elapsed += now - t_prev
        t_prev = now
        bar.update(1)
        if step % 10 == 0:  # reading values back waits for the device, so not every step
            seen += 1
            psnr = 10 * math.log10(1 / max(mse.mean().item(), 1e-10))
            stats = 0.9 * stats + 0.1 * np.array([loss.item(), bpp.mean().item(), psnr, aid.item()])
        if step % 50 == 0:
            loss_s, bpp_s, psnr_s, aid_s = stats / (1 - 0.9**seen)
            shown = {"loss": loss_s, "bpp": bpp_s, "psnr": psnr_s, **({"helping": aid_s} if helping is not None else {})}
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown.items()}, lr=f"{lr:.1e}")
            if step % 500 == 0:
                log.write(json.dumps({"step": step, "hours": elapsed / 3600, **shown}) + "\n")
                log.flush()
        finished = done()
        if now - last_save > args.save_minutes * 60 or finished:
            facts = {"step": step, "elapsed": elapsed, "args": vars(args)}
            extras = {"projections": helping.state_dict()} if helping is not None else {}
            if fine is not None:
                extras[FINE_DENSITY] = fine.density.state_dict()
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": config, **extras, **facts}, state_path)
            if args.release_to:
                release_checkpoint(model, facts, Path(args.release_to))
            last_save = now
        if args.eval_dir and (step % args.eval_every == 0 or finished):
            results = evaluate(model, args.eval_dir, [float(q) for q in range(1, QUALITIES + 1)])
            log.write(json.dumps({"step": step, "hours": elapsed / 3600, "machine": machine, "eval": results}) + "\n")
            log.flush()
            tqdm.write(f"step {step}: " + "  ".join(f"q{r['quality']:.0f} {r['bpp']:.3f}bpp {r['psnr']:.2f}dB" for r in results))
            t_prev = time.monotonic()  # evaluation time is not training time
    bar.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lic train", description=__doc__.splitlines()[0])
    add_arguments(parser)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
