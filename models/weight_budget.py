"""How much of the repository's weight budget is spent: DEVELOPERS.md allows 600 MB of weight files
ever added to git, counted over the whole history, since a weight file once committed stays in every clone.

    .venv/bin/python -m models.weight_budget [PATH ...]

Counts each distinct blob of a weight file (.onnx, .pt, .npz) reachable from any ref, plus the weight
files under PATHs (a release about to be committed) whose content git does not hold yet. Prints the
total and exits 1 if it is over the budget. models/after_lease.sh runs it on each new release.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BUDGET_BYTES = 600_000_000
WEIGHT_SUFFIXES = (".onnx", ".pt", ".npz")


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True, check=True).stdout


def committed_weights(repo: Path) -> dict[str, int]:
    """Size of every distinct weight-file blob in the history of all refs, by blob id."""
    listing = git(repo, "rev-list", "--objects", "--all")
    blobs = "\n".join(line.split(" ", 1)[0] for line in listing.splitlines() if line.endswith(WEIGHT_SUFFIXES))
    if not blobs:
        return {}
    sizes = git(repo, "cat-file", "--batch-check=%(objectname) %(objectsize)", stdin=blobs + "\n")
    return {blob: int(size) for blob, size in (line.split() for line in sizes.splitlines())}


def pending_weights(repo: Path, paths: list[Path], known: dict[str, int]) -> dict[str, int]:
    """Weight files under `paths` whose content is not yet a blob in the history, by blob id."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.suffix in WEIGHT_SUFFIXES]
    if not files:
        return {}
    ids = git(repo, "hash-object", "--stdin-paths", stdin="\n".join(str(f.resolve()) for f in files) + "\n").split()
    return {blob: f.stat().st_size for blob, f in zip(ids, files, strict=True) if blob not in known}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="*", type=Path, help="weight files or folders not committed yet")
    args = p.parse_args()
    repo = Path(git(Path.cwd(), "rev-parse", "--show-toplevel").strip())
    committed = committed_weights(repo)
    pending = pending_weights(repo, args.paths, committed)
    total = sum(committed.values()) + sum(pending.values())
    print(f"weight files ever added: {sum(committed.values()) / 1e6:.1f} MB in {len(committed)} blobs"
          + (f" + {sum(pending.values()) / 1e6:.1f} MB new in {len(pending)} files" if args.paths else "")
          + f" = {total / 1e6:.1f} MB of {BUDGET_BYTES / 1e6:.0f} MB ({(BUDGET_BYTES - total) / 1e6:.1f} MB left)")
    sys.exit(1 if total > BUDGET_BYTES else 0)


if __name__ == "__main__":
    main()
