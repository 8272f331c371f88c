"""Forged bitstreams are refused with the library's own errors, or decode within bounds: never a crash,
a hang or a memory blow-up.

Runs the structure-aware hypothesis strategy of tests/fuzz_streams.py for as long as it is given: each
input starts from a golden stream (tests/golden/*.lic), varies header fields (version, flags, model id,
fingerprint, quality, width, height, mode, tile, deblock, context, the tile table, the alpha entry) and
payloads (empty, truncated, extended, random, swapped between tiles, taken from another stream), keeps
every checksum valid, and goes through ``Codec(max_pixels=4_000_000).decompress``; one input in 16 is
instead damaged after checksumming, which the checksums must catch. A clean outcome is a ``CodecError``
(or a ``ValueError`` for a region outside the image), or an image of the header's (region's) size and
mode. Anything else is a failure: another exception, an ill-formed image, damage that decodes, an input
over its time limit (15 s + 1 s per 100,000 window pixels its header makes the transforms run), or a worker that dies (the kernel's OOM
killer, a crash in native code) or stops answering.

The fuzzing runs in a worker process under RLIMIT_AS (3 GiB); this process watches it, restarts it
with the next seed if it dies or hangs, and keeps the input it was on.

    .venv/bin/python benchmarks/fuzz_bitstreams.py [--seconds 600] [--seed 0] [--workers 2]
    .venv/bin/python benchmarks/fuzz_bitstreams.py --summary

A run prints a table and writes benchmarks/fuzz_bitstreams_seed<SEED>.json (counts, rate, outcome
classes, failures); each run takes a seed no earlier run used. ``--summary`` adds up every run's file
into benchmarks/fuzz_bitstreams.json: the campaign's inputs and failures, and how many inputs ran
after the last run that found a failure (on the decoder as it is since that failure's fix).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from service.bench.speed import machine  # noqa: E402
from tests import fuzz_streams  # noqa: E402

CHUNK = 200  # inputs per hypothesis run in the worker (each with its own seed)
STALL_S = fuzz_streams.input_seconds(fuzz_streams.MAX_WORK) + 120  # no new input for this long: the worker hangs
MILLION = 1_000_000


class Worker:
    """``python -m tests.fuzz_streams`` in a process of its own, read line by line."""

    def __init__(self, seconds: float, seed: int, current: Path, threads: int):
        self.current = current
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz_streams", "--seconds", str(seconds), "--seed", str(seed), "--chunk", str(CHUNK),
             "--current", str(current), "--threads", str(threads)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True).start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def stalled(self) -> bool:
        last = self.current.stat().st_mtime if self.current.exists() else time.time()
        return time.time() - last > STALL_S


class Tally:
    """What the workers report, added up (from one thread per worker)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.changes: collections.Counter[str] = collections.Counter()
        self.failures: list[dict] = []
        self.cpu = 0.0
        self.chunks = self.restarts = 0

    def add_worker(self, worker: Worker, died: str | None) -> None:
        with self.lock:
            cpu = 0.0
            for line in worker.lines:
                report = json.loads(line)
                self.chunks += 1
                self.outcomes.update(report["counts"])
                self.changes.update(report.get("changes", {}))
                self.failures.extend(report["failures"])
                cpu = report["cpu_seconds"]
            self.cpu += cpu
            if died:
                self.outcomes[f"FAILURE: {died.split(':')[0]}"] += 1
                data = worker.current.read_bytes() if worker.current.exists() else b""
                self.failures.append({"failure": died, "input_hex": data.hex()})
                self.restarts += 1


def fuzz_until(deadline: float, seed: int, scratch: Path, tally: Tally, threads: int) -> None:
    """One worker at a time until ``deadline``; a worker that dies or hangs is replaced, on other inputs."""
    while time.time() < deadline - 5:
        worker = Worker(deadline - time.time(), seed, scratch / f"current-{seed}.lic", threads)
        died = None
        while worker.proc.poll() is None:
            time.sleep(1.0)
            if worker.stalled():
                worker.proc.kill()
                died = "hang: the worker took no new input for %.0f s" % STALL_S
            elif time.time() > deadline + STALL_S:  # past the end, and the last chunk still not done
                worker.proc.kill()
        worker.proc.wait()
        time.sleep(0.2)  # let the readers drain
        if died is None and worker.proc.returncode not in (0, -9):
            died = f"worker died with status {worker.proc.returncode}: {''.join(worker.stderr)[-300:]}"
        tally.add_worker(worker, died)
        if not died:
            return  # the worker used its time
        seed += 1_000  # a fresh worker, on other inputs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="worker processes, each on its own seeds")
    p.add_argument("--out", type=Path, help="default: benchmarks/fuzz_bitstreams_seed<SEED>.json")
    p.add_argument("--summary", action="store_true", help="add up the runs' files instead of fuzzing")
    p.add_argument("--failures-dir", type=Path, default=Path(tempfile.gettempdir()) / "lic-fuzz-failures")
    args = p.parse_args()
    if args.summary:
        summarise()
        return

    tally = Tally()
    ort_threads = max(1, (os.cpu_count() or 1) // args.workers)  # the workers share the cores, not oversubscribe them
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        threads = [threading.Thread(target=fuzz_until, args=(started + args.seconds, args.seed + 100_000 * k, Path(scratch), tally, ort_threads))
                   for k in range(args.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    outcomes, changes, failures, cpu, chunks, restarts = tally.outcomes, tally.changes, tally.failures, tally.cpu, tally.chunks, tally.restarts

    elapsed = time.time() - started
    total = sum(outcomes.values())
    rate = total / elapsed
    args.failures_dir.mkdir(parents=True, exist_ok=True)
    failures = failures[:100]
    for i, failure in enumerate(failures):  # the inputs go to files; the JSON keeps their names
        path = args.failures_dir / f"failure-{i}.lic"
        path.write_bytes(bytes.fromhex(failure.pop("input_hex", "")))
        failure["input"] = str(path)

    print(f"{total} forged inputs in {elapsed:.0f} s ({rate:.1f}/s, {args.workers} workers, CPU {cpu:.0f} s), {chunks} chunks of {CHUNK}, "
          f"{restarts} worker restarts; {machine()}")
    print("| outcome | inputs |\n|---|---|")
    for kind, n in outcomes.most_common():
        print(f"| {kind} | {n} |")
    report = {
        "machine": machine(), "date": time.strftime("%Y-%m-%d"), "seed": args.seed,
        "strategy": "tests/fuzz_streams.py forged_streams (hypothesis), from the golden streams, checksums recomputed",
        "limits": {"max_pixels": fuzz_streams.MAX_PIXELS, "memory_rlimit_as_bytes": fuzz_streams.MEMORY_LIMIT,
                   "seconds_per_input": "15 + claimed window pixels / 100000 (at most %.0f)" % fuzz_streams.input_seconds(fuzz_streams.MAX_WORK)},
        "workers": args.workers, "onnxruntime_threads_per_worker": ort_threads, "seconds": round(elapsed, 1), "worker_cpu_seconds": round(cpu, 1), "inputs": total,
        "inputs_per_second": round(rate, 2),
        "worker_restarts": restarts,
        "one_million_inputs": {"run": total >= MILLION,
                               "hours_at_this_rate_on_this_machine": round(MILLION / rate / 3600, 1),
                               "worker_cpu_hours": round(MILLION * cpu / total / 3600, 1),
                               "note": ("this run" if total >= MILLION else f"not run: this run was {total} inputs; a million would take the hours above")},
        "failures_total": sum(n for k, n in outcomes.items() if k.startswith("FAILURE")),
        "outcomes": dict(outcomes.most_common()),
        "inputs_changing": dict(changes.most_common()),
        "failures": failures[:20],
    }
    out = args.out or HERE / f"fuzz_bitstreams_seed{args.seed}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    if report["failures_total"]:
        raise SystemExit(f"failures found: see the table, {out} and {args.failures_dir}")


def summarise() -> None:
    """Every run's file, in the order they ran (by seed), added up into fuzz_bitstreams.json."""
    runs = sorted((json.loads(path.read_text()) for path in HERE.glob("fuzz_bitstreams_seed*.json")), key=lambda r: r["seed"])
    rows = [{k: run[k] for k in ("seed", "date", "machine", "workers", "seconds", "inputs", "inputs_per_second", "failures_total")}
            for run in runs]
    last_failing = max((i for i, r in enumerate(rows) if r["failures_total"]), default=-1)
    total = sum(r["inputs"] for r in rows)
    summary = {"runs": rows, "inputs": total, "failures": sum(r["failures_total"] for r in rows),
               "one_million_inputs": total >= MILLION,
               "inputs_since_last_failing_run": sum(r["inputs"] for r in rows[last_failing + 1:]),
               "note": "each failure was fixed, with a test, before the next run (README, Reliability)"}
    print("| seed | date | inputs | seconds | inputs/s | failures |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['date']} | {r['inputs']:,} | {r['seconds']:,.0f} | {r['inputs_per_second']:.1f} | {r['failures_total']} |")
    print(f"{total:,} inputs in all, {summary['failures']} failures; {summary['inputs_since_last_failing_run']:,} since the last run that found one")
    (HERE / "fuzz_bitstreams.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
