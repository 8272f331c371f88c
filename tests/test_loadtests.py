"""The load-test tooling runs for real: each Locust scenario headless against the service, writing CSV,
and one perf_analyzer-style level of the sweep."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.sweep import lic_batches, measure_level
from tests.service_harness import ServiceProcess

LOCUSTFILE = Path(__file__).resolve().parents[1] / "loadtests" / "locustfile.py"


@pytest.fixture(scope="module")
def service():
    process = ServiceProcess().start()
    yield process
    process.stop()


@pytest.mark.parametrize("scenario", ["CompressOnly", "CachedDecompress", "RegionReads", "MixedSizes"])
def test_locust_scenario(service, tmp_path, scenario):
    prefix = tmp_path / scenario
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2", "-r", "2", "-t", "10s",
         "--host", service.url, "--csv", str(prefix), "--only-summary", scenario],
        capture_output=True, text=True, timeout=900, env={**os.environ, "LIC_LOCUST_REGION_IMAGE": "1024x768"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0


def test_sweep_level_measures_throughput_latency_and_batches(service):
    images = [(Path(__file__).parent / "data" / "kodim01.png").read_bytes()]
    row = measure_level(service.url, {"quality": 4}, images, concurrency=2, window_s=2, metric=lic_batches(service))
    assert row["megapixels_per_s"] > 0 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert row["error_rate"] == 0 and row["mean_batch_size"] >= 1 and row["windows"] >= 2


def test_baseline_server_encodes_and_decodes(tmp_path):
    """The Pillow AVIF/WebP endpoint the sweeps (and benchmarks/gpu_service.py) set beside the service."""
    import io

    import httpx
    import numpy as np
    from PIL import Image

    from tests.service_harness import baseline_server

    with baseline_server() as url:
        original = (Path(__file__).parent / "data" / "kodim01.png").read_bytes()
        for codec in ("avif", "webp"):
            coded = httpx.post(url + "/compress", content=original, params={"codec": codec}, timeout=60)
            assert coded.status_code == 200 and len(coded.content) < len(original) / 4
            decoded = httpx.post(url + "/decompress", content=coded.content, timeout=60)
            assert decoded.status_code == 200 and decoded.headers["content-type"] == "image/png"
            image = np.asarray(Image.open(io.BytesIO(decoded.content)).convert("RGB"), dtype=np.float64)
            reference = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"), dtype=np.float64)
            assert image.shape == reference.shape and 10 * np.log10(255**2 / np.mean((image - reference) ** 2)) > 25
        assert httpx.post(url + "/decompress", content=b"not an image", timeout=60).status_code == 422
