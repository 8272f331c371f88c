"""BD-rate against the published numbers (RD_ANCHORS.md: BPG vs JPEG on Kodak is -58.9% PCHIP, -59.1% cubic)."""
import json
from pathlib import Path

import pytest

from service.bench.bd import bd_psnr, bd_rate

ANCHORS = Path(__file__).parent / "data" / "anchors"
PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "anchors"


def curve(path: Path):
    results = json.loads(path.read_text())["results"]
    return results["bpp"], results["psnr-rgb"]


def test_bpg_against_jpeg_matches_published_figures():
    jpeg, bpg = curve(ANCHORS / "jpeg.json"), curve(PUBLISHED / "bpg-444.json")
    assert bd_rate(*jpeg, *bpg) == pytest.approx(-58.9, abs=0.05)
    assert bd_rate(*jpeg, *bpg, method="cubic") == pytest.approx(-59.1, abs=0.05)
    assert bd_psnr(*jpeg, *bpg) > 3
    assert bd_rate(*bpg, *jpeg) > 100  # the reverse comparison is a large loss
