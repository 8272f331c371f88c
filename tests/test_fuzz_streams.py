"""Forged streams with valid checksums (tests/fuzz_streams.py) are refused with the library's own errors
or decode to a well-formed image, within a memory limit and a time limit per input.

A few thousand of hypothesis's derandomized examples (the same every run), in their own process under
RLIMIT_AS; benchmarks/fuzz_bitstreams.py runs the same strategy for as long as it is given.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import fuzz_streams

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 2500  # ~80 s of CPU on the 2-core CI machine


def test_forged_streams_are_refused_or_decode_well_formed():
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz_streams", "--examples", str(EXAMPLES), "--derandomize", "--raise-failures"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    counts = report["counts"]
    assert sum(counts.values()) == EXAMPLES and not report["failures"]
    # The strategy reaches every layer: the parser, the model check, the entropy decoder, the limits, whole decodes.
    assert counts["decoded"] > EXAMPLES // 20
    for kind in ["not a .lic bitstream", "corrupted .lic header (checksum mismatch)", "unsupported .lic format version",
                 "corrupted .lic header (tile of N px)", "tile N ends before its symbols do", "tile N goes on after its last symbol",
                 "tile N is empty", "bitstream was written by a different version of model", "bitstream holds N pixels"]:
        assert any(kind in outcome for outcome in counts), (kind, counts)


def test_an_input_over_its_time_limit_is_a_failure(monkeypatch, codec):
    forged = fuzz_streams.Forged((fuzz_streams.GOLDEN / "rgba-q8.lic").read_bytes(), None, [])
    assert fuzz_streams.outcome(codec, forged) == "decoded"
    monkeypatch.setattr(fuzz_streams, "input_seconds", lambda work: 1e-3)
    with pytest.raises(fuzz_streams.FuzzFailure, match="hang"):
        fuzz_streams.outcome(codec, fuzz_streams.Forged((fuzz_streams.GOLDEN / "kodim01-crop-q6.lic").read_bytes(), None, []))


def test_a_foreign_exception_is_a_failure(monkeypatch, codec):
    forged = fuzz_streams.Forged((fuzz_streams.GOLDEN / "rgba-q8.lic").read_bytes(), None, [])
    monkeypatch.setattr(codec, "decompress", lambda data, region=None: [][0])
    with pytest.raises(fuzz_streams.FuzzFailure, match="crash: IndexError"):
        fuzz_streams.outcome(codec, forged)
