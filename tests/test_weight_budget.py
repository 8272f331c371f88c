"""models.weight_budget counts each weight blob ever committed once, and what a release would add."""
import subprocess
import sys
from pathlib import Path

import numpy as np

from models.weight_budget import BUDGET_BYTES

ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)


def budget(repo: Path, *paths: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "models.weight_budget", *paths], cwd=repo, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_history_pending_and_over_budget(tmp_path):
    repo = tmp_path / "repo"
    (repo / "zoo").mkdir(parents=True)
    git(repo, "init", "-q")
    weights = np.random.default_rng(0).integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    (repo / "zoo" / "a.onnx").write_bytes(weights)
    (repo / "zoo" / "copy.onnx").write_bytes(weights)  # the same content twice is one blob
    (repo / "notes.txt").write_text("not a weight file")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a")
    git(repo, "rm", "-q", "zoo/a.onnx", "zoo/copy.onnx")  # deleted files still count: they are in the history
    git(repo, "commit", "-qm", "rm")

    out = budget(repo)
    assert out.returncode == 0, out.stderr
    assert "1.0 MB in 1 blobs" in out.stdout

    (repo / "zoo" / "new").mkdir(parents=True)  # git rm took the emptied zoo/ away
    (repo / "zoo" / "new" / "b.pt").write_bytes(weights[:500_000] + b"x")  # new content
    (repo / "zoo" / "new" / "old.npz").write_bytes(weights)  # content already in the history
    out = budget(repo, "zoo/new")
    budget_mb = BUDGET_BYTES // 1_000_000
    assert out.returncode == 0 and f"+ 0.5 MB new in 1 files = 1.5 MB of {budget_mb} MB" in out.stdout

    with open(repo / "zoo" / "new" / "huge.onnx", "wb") as huge:  # sparse: 1 MB short of the budget
        huge.truncate(BUDGET_BYTES - 1_000_000)
    out = budget(repo, "zoo/new")
    assert out.returncode == 1 and f"= {budget_mb + 0.5:.1f} MB of {budget_mb} MB" in out.stdout
