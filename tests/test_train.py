"""``lic train`` runs, evaluates, checkpoints, and resumes where it stopped; ``lic export`` packages it."""
import json
import subprocess
import sys
from pathlib import Path

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


def test_widening_the_latent_starts_as_the_narrow_model():
    from models.architectures import build
    from models.warm_start import warm_start

    torch.manual_seed(0)
    narrow = build({"architecture": "mean-scale", "n": 16, "m": 24}).eval()
    wide = build({"architecture": "mean-scale", "n": 16, "m": 48}).eval()
    copied, widened = warm_start(wide, narrow.state_dict(), narrow.config())
    assert widened == 8 and copied + widened == len(narrow.state_dict())  # g_a out, h_a in, h_s head, g_s in, gains
    head = wide.state_dict()["h_s.head.1.bias"]
    assert torch.equal(head[48:72], narrow.state_dict()["h_s.head.1.bias"][24:])  # positions block lands on positions
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = narrow(x, torch.tensor([6.0]), noise=False), wide(x, torch.tensor([6.0]), noise=False)
    assert torch.allclose(a["x_hat"], b["x_hat"], atol=2e-3)
    assert abs(b["bits"].item() - a["bits"].item()) <= 0.01 * a["bits"].item() + 1.0


def test_coarse2fine_is_not_widened():
    from models.architectures import build
    from models.warm_start import warm_start

    narrow = build({"architecture": "coarse2fine", "n": 16, "m": 24, "h2": 16, "h1": 8})
    wide = build({"architecture": "coarse2fine", "n": 16, "m": 48, "h2": 16, "h1": 8})
    _, widened = warm_start(wide, narrow.state_dict(), narrow.config())
    assert widened == 0
