"""Corrupted bitstreams are refused, never crash, hang or decode to a different image.

Mutates the committed golden streams (tests/golden/*.lic) at random: one flipped bit, up to 20 bytes
overwritten, truncation, bytes inserted or deleted, or the tail spliced from another stream. The
checksums catch those, so half the mutants instead corrupt one tile's payload (or the alpha plane)
and re-checksum the container, as a forger would: these reach the entropy decoder and the integer
hyper-synthesis. Each mutant goes through ``Codec.decompress``. A clean outcome is a ``CodecError``;
or a decode of a stream identical to a golden one; or, for a re-checksummed stream, any decode (its
checksums are valid, so it is a well-formed stream, not a corrupted one). Anything else (another
exception, a corrupted stream with broken checksums that decodes, a decode over 5 s) is a failure.

    .venv/bin/python benchmarks/fuzz_bitstreams.py [--seconds 300] [--seed 0]

Prints a table and writes benchmarks/fuzz_bitstreams.json.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from service.bench.speed import machine
from service.codec import Codec, bitstream
from service.codec.errors import CodecError

SLOW_S = 5.0


def damage(data: bytes, kind: str, streams: list[bytes], rng: random.Random) -> bytes:
    out = bytearray(data)
    i = rng.randrange(max(1, len(out)))
    if kind == "bit flip":
        out[i] ^= 1 << rng.randrange(8)
    elif kind == "bytes overwritten":
        for _ in range(rng.randint(1, 20)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == "truncated":
        del out[i:]
    elif kind == "bytes inserted":
        out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "bytes deleted":
        del out[i : i + rng.randint(1, 16)]
    else:
        out = out[:i] + rng.choice(streams)[i:]
    return bytes(out)


def mutate(data: bytes, streams: list[bytes], rng: random.Random) -> tuple[str, bytes, bool]:
    """(mutation, mutant, whether its checksums were recomputed)."""
    kind = rng.choice(["bit flip", "bytes overwritten", "truncated", "bytes inserted", "bytes deleted", "tail spliced"])
    if rng.random() < 0.5:
        return kind, damage(data, kind, streams, rng), False
    header = bitstream.parse(data)
    payloads = [bitstream.tile_payload(data, header, i) for i in range(header.grid.count)]
    alpha = bitstream.alpha_payload(data, header)
    target = rng.randrange(len(payloads) + (alpha is not None))
    if target < len(payloads):
        payloads[target] = damage(payloads[target], kind, streams, rng)
        where = "tile payload"
    else:
        alpha = damage(alpha, kind, streams, rng)
        where = "alpha plane"
    return f"{where}, {kind}, re-checksummed", bitstream.pack(header, payloads, alpha), True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).with_name("fuzz_bitstreams.json")))
    args = p.parse_args()
    codec = Codec()
    streams = [path.read_bytes() for path in sorted((ROOT / "tests" / "golden").glob("*.lic"))]
    originals = set(streams)
    rng = random.Random(args.seed)
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[dict] = []
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        kind, data, rechecksummed = mutate(rng.choice(streams), streams, rng)
        started = time.perf_counter()
        try:
            codec.decompress(data)
            if data in originals:
                outcome = "decoded, unchanged stream"
            else:
                outcome = "decoded, well-formed stream" if rechecksummed else "FAILURE: corrupted stream decoded"
        except CodecError as error:
            outcome = f"refused: {type(error).__name__}"
        except Exception as error:  # the failure this hunts for: report it, keep fuzzing
            outcome = f"FAILURE: {type(error).__name__}"
            failures.append({"mutation": kind, "error": f"{type(error).__name__}: {error}"[:300]})
        if time.perf_counter() - started > SLOW_S:
            outcome = "FAILURE: slower than 5 s"
        outcomes[kind][outcome] += 1

    total = sum(sum(c.values()) for c in outcomes.values())
    print(f"{total} mutants of {len(streams)} golden streams in {args.seconds:.0f} s; {machine()}")
    print("| mutation | mutants | outcomes |\n|---|---|---|")
    for kind, counter in sorted(outcomes.items()):
        print(f"| {kind} | {sum(counter.values())} | " + ", ".join(f"{k}: {v}" for k, v in counter.most_common()) + " |")
    report = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": args.seconds, "seed": args.seed,
              "mutants": total, "outcomes": {k: dict(v) for k, v in outcomes.items()}, "failures": failures[:20]}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if any(k.startswith("FAILURE") for counter in outcomes.values() for k in counter):
        raise SystemExit("failures found: see the table and the JSON")


if __name__ == "__main__":
    main()
