"""The Grafana dashboard works for real: a real Prometheus scrapes the running service under load, and
every panel's PromQL query returns data (the DCGM GPU panels excepted: they need NVIDIA's exporter)."""
import math
import time

import numpy as np
import pytest

from tests.conftest import png_bytes
from tests.service_harness import PrometheusServer, ServiceProcess
from tests.test_deploy import EXTERNAL_METRICS, dashboard, promql_metrics


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    service = ServiceProcess().start()
    prometheus = PrometheusServer([f"127.0.0.1:{service.port}"], tmp_path_factory.mktemp("prometheus")).start()
    rng = np.random.default_rng(0)
    with service.client() as client:
        deadline = time.monotonic() + 12  # load spread over many scrapes, so rate() sees increases
        while time.monotonic() < deadline:
            image = png_bytes(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
            data = client.post("/compress", content=image, headers={"Content-Type": "image/png"}, params={"quality": 3}).content
            for _ in range(2):  # the second decode is a cache hit
                client.post("/decompress", content=data, headers={"Content-Type": "application/octet-stream"})
            client.post("/compress", content=b"not an image", headers={"Content-Type": "image/png"})  # a 422
            time.sleep(0.5)
    time.sleep(3)  # final scrapes
    yield prometheus
    prometheus.stop()
    service.stop()


def panel_queries():
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            if not promql_metrics(target["expr"]) & EXTERNAL_METRICS:
                yield pytest.param(target["expr"], id=f"{panel['title']}/{target['refId']}")


@pytest.mark.parametrize("expr", list(panel_queries()))
def test_panel_query_returns_data(scraped, expr):
    result = scraped.query(expr)
    assert result, f"no series for {expr}"
    values = [float(series["value"][1]) for series in result]
    assert any(not math.isnan(v) for v in values), f"only NaN for {expr}"
