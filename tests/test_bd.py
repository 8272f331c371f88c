"""BD-rate against the published numbers (RD_ANCHORS.md: BPG vs JPEG on Kodak is -58.9% PCHIP, -59.1% cubic)."""
import json
from pathlib import Path

import pytest

from service.bench.bd import bd_psnr, bd_rate

ANCHORS = Path(__file__).parent / "data" / "anchors"


def curve(name):
    results = json.loads((ANCHORS / name).read_text())["results"]
    return results["bpp"], results["psnr-rgb"]


def test_bpg_against_jpeg_matches_published_figures():
    jpeg, bpg = curve("jpeg.json"), curve("bpg_444_x265_ycbcr.json")
    assert bd_rate(*jpeg, *bpg) == pytest.approx(-58.9, abs=0.05)
    assert bd_rate(*jpeg, *bpg, method="cubic") == pytest.approx(-59.1, abs=0.05)
    assert bd_psnr(*jpeg, *bpg) > 3
    assert bd_rate(*bpg, *jpeg) > 100  # the reverse comparison is a large loss
