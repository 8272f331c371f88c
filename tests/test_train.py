"""``lic train`` runs, evaluates, checkpoints, and resumes where it stopped; ``lic export`` packages it."""
import json
import subprocess
import sys
from pathlib import Path

import onnx
import torch

DATA = Path(__file__).parent / "data"


def train(run: Path, steps: int, *extra: str) -> str:
    cmd = [sys.executable, "-m", "service.cli", "train", "--arch", "mean-scale", "--widths", "n=16,m=24", "--data", str(DATA),
           "--run", str(run), "--steps", str(steps), "--patch", "64", "--batch", "2", "--per-image", "4",
           "--eval-dir", str(DATA), "--eval-every", "2", "--threads", "1", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_train_resume_and_export(tmp_path):
    run = tmp_path / "run"
    train(run, 2)
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2
    output = train(run, 4, "--metric", "ms-ssim")
    assert "resumed" in output and "at step 2" in output
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 4
    evals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if "eval" in line]
    assert [e["step"] for e in evals] == [2, 4] and len(evals[-1]["eval"]) == 8

    zoo = tmp_path / "zoo"
    proc = subprocess.run([sys.executable, "-m", "service.cli", "export", str(run / "last.pt"), "--id", "t", "--zoo", str(zoo)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((zoo / "t" / "manifest.json").read_text())
    assert manifest["training"]["steps"] == 4 and manifest["architecture"] == "mean-scale"
    assert manifest["onnx"]["max_abs_diff_vs_pytorch"]["h_s"] == 0.0
    assert max(manifest["onnx"]["max_abs_diff_vs_pytorch"].values()) < 1e-3
    # The fp16-trained weights are stored as float16 (export asserts that outputs do not change).
    g_a = onnx.load(str(zoo / "t" / "g_a.onnx"))
    floats = {i.data_type for i in g_a.graph.initializer} & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert floats == {onnx.TensorProto.FLOAT16}

    # The package is the release's only copy of its weights: they read back as the fp16-rounded
    # trained tensors, every one of them, and a new run warm-starts from it.
    from models.release import load_checkpoint

    trained = torch.load(run / "last.pt", weights_only=False)["model"]
    released, state = load_checkpoint(zoo / "t")
    assert state["step"] == 4 and released.state_dict().keys() == trained.keys()
    assert all(torch.equal(v, trained[k].half().float()) for k, v in released.state_dict().items())
    output = train(tmp_path / "next", 1, "--init-from", str(zoo / "t"))
    assert f"{len(trained)} tensors copied, 0 widened, of {len(trained)}" in output


def test_the_entropy_stage_trains_only_the_entropy_model(tmp_path):
    """--stage entropy: a new coarse2fine entropy model fitted to a mean-scale source's transforms."""
    source = tmp_path / "source"
    train(source, 1, "--eval-dir", "")
    output = train(tmp_path / "fit", 3, "--arch", "coarse2fine", "--widths", "n=16,m=24,h2=16,h1=8", "--stage", "entropy",
                   "--init-from", str(source / "last.pt"), "--lr", "1e-2")
    assert "tensors copied" in output
    before = torch.load(source / "last.pt", weights_only=False)["model"]
    after = torch.load(tmp_path / "fit" / "last.pt", weights_only=False)["model"]
    moved = {k.split(".")[0] for k, v in after.items() if k in before and v.shape == before[k].shape and not torch.equal(v, before[k])}
    assert "g_a" not in moved and "g_s" not in moved and "log_gain" not in moved
    from models.architectures import build

    torch.manual_seed(0)  # the run's seed: the fresh tensors it started from
    fresh = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8}).state_dict()
    assert not torch.equal(after["h_s2.head.3.weight"], fresh["h_s2.head.3.weight"])  # trained
    assert torch.equal(after["aggregate.0.weight"], fresh["aggregate.0.weight"])  # synthesis: frozen


def test_a_time_budget_ends_the_run_by_itself(tmp_path):
    """--minutes: the lr schedule runs on training time and the run stops, checkpointed, when it is spent."""
    run = tmp_path / "run"
    train(run, 10**9, "--minutes", "0.05")
    state = torch.load(run / "last.pt", weights_only=False)
    assert 0 < state["step"] < 10**9 and state["elapsed"] >= 3.0


def test_every_save_also_writes_the_release_checkpoint(tmp_path):
    """--release-to: the fp16 weights of the latest save, a whole file at every point, loadable on the CPU."""
    from models.release import load_checkpoint

    run, release = tmp_path / "run", tmp_path / "out" / "r.pt"
    train(run, 3, "--release-to", str(release), "--save-minutes", "0")
    saved = torch.load(run / "last.pt", weights_only=False)
    model, state = load_checkpoint(release)
    assert state["step"] == saved["step"] == 3 and not release.with_name("r.pt.tmp").exists()
    assert all(torch.equal(v, saved["model"][k].half().float()) for k, v in model.state_dict().items())


def test_stop_minutes_pauses_a_run_and_resuming_keeps_its_schedule(tmp_path):
    """--stop-minutes ends the call early (checkpointed, lr not decayed); the resumed call finishes the
    schedule that --minutes planned."""
    run = tmp_path / "run"
    train(run, 10**9, "--minutes", "0.1", "--stop-minutes", "0.02", "--decay-from", "0", "--eval-every", "100000")
    paused = torch.load(run / "last.pt", weights_only=False)
    assert 1.2 <= paused["elapsed"] < 6.0
    assert paused["optimizer"]["param_groups"][0]["lr"] > 0.5e-3  # cosine from 1e-3 over 6 s: still high
    train(run, 10**9, "--minutes", "0.1", "--decay-from", "0", "--eval-every", "100000")
    finished = torch.load(run / "last.pt", weights_only=False)
    assert finished["elapsed"] >= 6.0 and finished["step"] > paused["step"]
    assert finished["optimizer"]["param_groups"][0]["lr"] < 0.1e-3


def test_warm_start_copies_matching_tensors_across_architectures():
    from models.architectures import build
    from models.warm_start import warm_start

    source = build({"architecture": "mean-scale", "n": 16, "m": 24})
    target = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    copied, widened = warm_start(target, source.state_dict(), source.config())
    own = target.state_dict()
    shared = [k for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape]
    assert widened == 0 and copied == len(shared) and any(k.startswith("g_a.") for k in shared)
    assert all(torch.equal(own[k], source.state_dict()[k]) for k in shared)
    assert not any(k.startswith(("h_a1.", "fuse.")) for k in shared)  # coarse2fine's own layers stay fresh


def test_coarse2fine_warm_start_synthesizes_what_its_source_did():
    from models.architectures import build
    from models.warm_start import warm_start

    torch.manual_seed(0)
    source = build({"architecture": "mean-scale", "n": 16, "m": 24})
    target = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    warm_start(target, source.state_dict(), source.config())
    x, q = torch.rand(2, 3, 128, 128), torch.tensor([2.0, 6.5])
    with torch.no_grad():
        y_hat = torch.round(target.g_a(x) * target.gains(q)[0])
        latents = target.hyper_analysis(y_hat)
        f1 = target.h_s1(torch.round(latents["z1"]))[0]
        features = {"h_s1": f1, "h_s2": target.h_s2(torch.round(latents["z2"]))[0]}
        assert torch.allclose(target.synthesize(y_hat, features), source.g_s(y_hat), atol=1e-5)
    # The aggregated hyper features are unread at first; the residual's last convolution, which can
    # bring them into the channels the inherited last layer reads, gets gradients from the start.
    target.synthesize(y_hat, features).square().mean().backward()
    fuse_last = target.fuse[-1].weight.grad
    assert fuse_last[:16].abs().sum() > 0  # the rows that add to the g_s channels


def test_a_fresh_coarse2fine_starts_with_its_hyper_path_open():
    """z2 and z1 start near y's magnitude: rounding does not zero them, so side information flows."""
    from models.architectures import build

    torch.manual_seed(0)
    model = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    with torch.no_grad():
        latents = model.hyper_analysis(torch.randn(2, 24, 32, 32))
    assert (torch.round(latents["z2"]) != 0).float().mean() > 0.3
    assert (torch.round(latents["z1"]) != 0).float().mean() > 0.1


def test_the_helping_losses_train_the_hyper_path_to_carry_each_latent():
    """Each hyper-synthesis's features must predict the latent below: the gradient reaches the hyper-analyses and
    the hyper-syntheses' trunks, not the mean/scale heads (the rate alone trains those) nor the latents' targets."""
    from models.architectures import build
    from models.hyper_projections import HyperProjections

    torch.manual_seed(0)
    model = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    helping = HyperProjections(model)
    coded = model.rate(torch.randn(2, 24, 16, 16))
    helping(coded.latents, coded.features).backward()
    assert {name: head.out_channels for name, head in helping.heads.items()} == {"h_s1": 16, "h_s2": 24}
    grads = {name: p.grad for name, p in model.named_parameters()}
    for reached in ("h_a2.4.weight", "h_a1.4.weight", "h_s1.trunk.0.weight", "h_s2.trunk.2.0.weight"):
        assert grads[reached] is not None and grads[reached].abs().sum() > 0, reached
    assert grads["h_s2.head.3.weight"] is None and grads["entropy_bottleneck.matrices.0"] is None
    target = torch.randn(2, 24, 16, 16, requires_grad=True)  # the latents are targets, not moved toward the prediction
    helping({"y": target, "z2": coded.latents["z2"]}, {k: v.detach() for k, v in coded.features.items()}).backward()
    assert target.grad is None


def test_helping_losses_train_beside_the_model_and_stay_out_of_it(tmp_path):
    """--helping-loss: the projections live in the run checkpoint (resumed with it), not in the model or its release."""
    source = tmp_path / "source"
    train(source, 1, "--eval-dir", "")
    fit, release = tmp_path / "fit", tmp_path / "fit.pt"
    args = ("--arch", "coarse2fine", "--widths", "n=16,m=24,h2=16,h1=8", "--stage", "entropy", "--helping-loss", "1",
            "--init-from", str(source / "last.pt"), "--eval-dir", "", "--release-to", str(release))
    train(fit, 2, *args)
    first = torch.load(fit / "last.pt", weights_only=False)
    assert first["projections"]["heads.h_s2.weight"].shape == (24, 24, 3, 3)
    assert not any("heads" in k for k in first["model"]) and not any("heads" in k for k in torch.load(release)["model"])
    assert "resumed" in train(fit, 4, *args)
    second = torch.load(fit / "last.pt", weights_only=False)
    assert second["step"] == 4 and not torch.equal(second["projections"]["heads.h_s2.weight"], first["projections"]["heads.h_s2.weight"])
    # the lease's stage 2 starts end to end from this run checkpoint, without the helping losses
    end_to_end = tmp_path / "all"
    train(end_to_end, 1, *args[:4], "--init-from", str(fit / "last.pt"), "--eval-dir", "")
    assert "projections" not in torch.load(end_to_end / "last.pt", weights_only=False)


def test_the_fine_first_stage_codes_z2_alone_then_hands_its_density_to_the_coarse_level(tmp_path):
    """--stage fine (the coarse-to-fine paper's first stage): y and z2 only, z2 under one learned scale per
    channel; a run warm-started from it adds z1, and z2 then costs exactly what it cost before the switch."""
    from models.architectures import build
    from models.fine_first import CHECKPOINT_KEY, fine_stage, seed_coarse_level
    from models.release import load_checkpoint

    source = tmp_path / "source"
    train(source, 1, "--eval-dir", "")
    args = ("--arch", "coarse2fine", "--widths", "n=16,m=24,h2=16,h1=8", "--eval-dir", "")
    train(tmp_path / "fine", 3, *args, "--stage", "fine", "--init-from", str(source / "last.pt"), "--lr", "1e-2")
    state = torch.load(tmp_path / "fine" / "last.pt", weights_only=False)
    torch.manual_seed(0)  # the run's seed: the fresh tensors it started from
    fresh = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8}).state_dict()
    moved = {k.split(".")[0] for k, v in state["model"].items() if not torch.equal(v, fresh[k])}
    assert {"h_a2", "h_s2"} <= moved and not moved & {"h_a1", "h_s1", "entropy_bottleneck", "aggregate"}
    assert not torch.equal(state[CHECKPOINT_KEY]["fraction"], torch.full((16,), 18.0 / 64))  # the density trained

    model, _ = load_checkpoint(tmp_path / "fine" / "last.pt")
    fine = fine_stage(model, state)
    x, q = torch.rand(1, 3, 128, 128), torch.tensor([3.0])
    y = model.g_a(x) * model.gains(q)[0]
    with torch.no_grad():
        alone = model.rate(y, noise=False, levels=fine.levels, density=fine.density)
        seed_coarse_level(model, state[CHECKPOINT_KEY])
        joined = model.rate(y, noise=False)
        # h_s1 starts as the density, whatever z1 says: mean 0 and the density's scale position per channel
        outputs = [model.h_s1(torch.randn(1, 8, 2, 2) * 5)[1:] for _ in range(2)]
    assert set(alone.bits) == {"z2", "y"} and set(joined.bits) == {"z1", "z2", "y"}
    assert torch.allclose(joined.bits["z2"], alone.bits["z2"]) and torch.allclose(joined.bits["y"], alone.bits["y"])
    for mean, position in outputs:
        assert torch.equal(mean, torch.zeros_like(mean))
        assert torch.allclose(position, fine.density.position.view(1, -1, 1, 1).expand_as(position))

    output = train(tmp_path / "coarse", 1, *args, "--stage", "entropy", "--init-from", str(tmp_path / "fine" / "last.pt"))
    assert "coarse level z1 added" in output
    proc = subprocess.run([sys.executable, "-m", "service.cli", "train", *args[:4], "--stage", "fine", "--data", str(DATA),
                           "--run", str(tmp_path / "x"), "--eval-dir", str(DATA)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "nothing to evaluate" in proc.stderr


def test_widening_the_latent_copies_the_old_channels_into_each_block():
    from models.architectures import build
    from models.warm_start import warm_start

    torch.manual_seed(0)
    narrow = build({"architecture": "mean-scale", "n": 16, "m": 24})
    wide = build({"architecture": "mean-scale", "n": 16, "m": 48})
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    copied, widened = warm_start(wide, narrow.state_dict(), narrow.config())
    own, old = wide.state_dict(), narrow.state_dict()
    assert widened == 8 and copied + widened == len(old)  # g_a out, h_a in, h_s head, g_s in, gain tables
    head = "h_s.head.1.weight"  # [means | scale positions]
    assert torch.equal(own[head][:24], old[head][:24]) and torch.equal(own[head][48:72], old[head][24:])
    assert torch.equal(own[head][24:48], fresh[head][24:48])  # new channels keep their fresh init
    assert torch.equal(own["g_s.0.weight"][:24], old["g_s.0.weight"]) and torch.equal(own["g_a.6.weight"][:24], old["g_a.6.weight"])
    assert torch.allclose(own["log_gain"][:, 24:], old["log_gain"].mean(1, keepdim=True).expand(-1, 24))
    out = wide(torch.rand(1, 3, 64, 64), torch.tensor([3.0]), noise=False)
    assert out["x_hat"].shape == (1, 3, 64, 64) and torch.isfinite(out["bits"]).all()


def test_coarse2fine_is_not_widened():
    from models.architectures import build
    from models.warm_start import warm_start

    narrow = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    wide = build({"architecture": "coarse2fine", "n": 16, "m": 48, "h2": 16, "h1": 8})
    _, widened = warm_start(wide, narrow.state_dict(), narrow.config())
    assert widened == 0


def test_compiled_training_saves_the_plain_module(tmp_path):
    run = tmp_path / "run"
    output = train(run, 2, "--compile")
    state = torch.load(run / "last.pt", weights_only=False)
    assert state["step"] == 2 and "torch.compile failed" not in output
    assert not any(k.startswith("_orig_mod.") for k in state["model"])


def test_a_failing_compiler_leaves_training_eager(tmp_path, monkeypatch, capsys):
    from models import train as trainer

    def broken_compile(module):
        def fail(*args, **kwargs):
            raise RuntimeError("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken_compile)
    run = tmp_path / "run"
    threads = torch.get_num_threads()  # the run sets the process's thread count; later tests keep theirs
    try:
        trainer.main(["--arch", "mean-scale", "--widths", "n=16,m=24", "--data", str(DATA), "--run", str(run), "--steps", "2",
                      "--patch", "64", "--batch", "2", "--per-image", "4", "--threads", "1", "--compile"])
    finally:
        torch.set_num_threads(threads)
    assert "torch.compile failed (RuntimeError: no compiler here); training eagerly" in capsys.readouterr().out
    assert torch.load(run / "last.pt", weights_only=False)["step"] == 2


def test_a_format_1_package_points_to_its_checkpoint():
    """Packages released before format 2 hold folded graphs, so PyTorch loads them from their .pt."""
    import pytest

    from models.release import LEGACY_CHECKPOINTS, ZOO, load_checkpoint, release_source

    with pytest.raises(ValueError, match="format-1 package"):
        load_checkpoint(ZOO / "c2f-64-96-r7")
    assert release_source("c2f-64-96-r7") == LEGACY_CHECKPOINTS / "c2f-64-96-r7.pt"


def test_rounded_latents_without_straight_through():
    """Without straight-through rounding no gradient reaches the analysis, and a predicted mean learns from
    the distortion (decoded = symbol + mean); with it, the analysis gets gradients and the mean's cancel."""
    from models.architectures import build

    torch.manual_seed(0)
    model = build({"architecture": "mean-scale", "n": 16, "m": 24})
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([2.0, 6.0])
    mean_head = model.h_s.head[1].weight  # its first 24 output channels are the means

    def distortion_grads(straight_through: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        out = model(x, q, noise=False, straight_through=straight_through)
        assert torch.isfinite(out["bits"]).all()
        (out["x_hat"] - x).square().mean().backward()
        return model.g_a[0].weight.grad, mean_head.grad[:24]

    analysis, mean = distortion_grads(straight_through=False)
    assert analysis.abs().sum() == 0 and mean.abs().sum() > 0  # rounding's gradient is zero
    analysis, mean = distortion_grads(straight_through=True)
    assert analysis.abs().sum() > 0 and mean.abs().sum() == 0
