"""Deployment files checked offline: kustomize overlays build, every manifest validates against the
Kubernetes 1.35 schemas, and probes, ports and metric names agree with the running service."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.service_harness import ServiceProcess

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
KUBERNETES_VERSION = "1.35"
EXTERNAL_METRICS = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"}  # from NVIDIA's DCGM exporter, when present


def build(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to build the overlays"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def dashboard() -> dict:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "lic.json").read_text())


def dashboard_queries() -> list[str]:
    return [t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]]


def promql_metrics(expr: str) -> set[str]:
    names = set(re.findall(r"\b(lic_[a-z_]+|DCGM_[A-Z_]+)\b", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("lic_") else n for n in names}


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def manifests(request) -> list[dict]:
    return build(request.param)


@pytest.fixture(scope="module")
def running():
    process = ServiceProcess().start()
    with process.client() as client:  # one request of each kind so every labelled series exists
        png = (Path(__file__).parent / "data" / "kodim01.png").read_bytes()
        data = client.post("/compress", content=png, headers={"Content-Type": "image/png"}).content
        client.post("/decompress", content=data, headers={"Content-Type": "application/octet-stream"})
    yield process
    process.stop()


def test_every_manifest_validates(manifests):
    for doc in manifests:
        if doc["kind"] == "ServiceMonitor":  # a CRD: no upstream schema; checked against the Service below
            service = find(manifests, "Service", "lic")
            ports = {p["name"] for p in service["spec"]["ports"]}
            assert all(e["port"] in ports for e in doc["spec"]["endpoints"])
            assert doc["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_gpu_overlay_requests_gpus(manifests):
    container = find(manifests, "Deployment", "lic")["spec"]["template"]["spec"]["containers"][0]
    config = find(manifests, "ConfigMap", "lic-config")["data"]
    gpus = container["resources"]["limits"].get("nvidia.com/gpu")
    assert (gpus == "1") == (config.get("LIC_DEVICE") == "cuda")


def test_probes_ports_and_drain_match_the_service(manifests, running):
    deployment = find(manifests, "Deployment", "lic")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = find(manifests, "ConfigMap", "lic-config")["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert str(ports["http"]) == config["LIC_PORT"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ports
        assert httpx.get(running.url + get["path"], timeout=10).status_code == 200, get["path"]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > float(config["LIC_DRAIN_SECONDS"]) + float(config["LIC_REQUEST_TIMEOUT_S"])
    service = find(manifests, "Service", "lic")
    assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    assert find(manifests, "ServiceMonitor", "lic")["spec"]["endpoints"][0]["path"] == "/metrics"
    labels = find(manifests, "ConfigMap", "lic-grafana-dashboard")["metadata"]["labels"]
    assert labels.get("grafana_dashboard") == "1"


def test_every_metric_named_by_hpa_adapter_and_dashboard_is_exported(manifests, running):
    exported = {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", httpx.get(running.url + "/metrics").text, re.MULTILINE)}
    exported |= {n[: -len("_total")] for n in exported if n.endswith("_total")}
    hpa = find(manifests, "HorizontalPodAutoscaler", "lic")
    named = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    rules = yaml.safe_load(find(manifests, "ConfigMap", "lic-prometheus-adapter-rules")["data"]["config.yaml"])["rules"]
    for rule in rules:
        named |= promql_metrics(rule["seriesQuery"]) | promql_metrics(rule["metricsQuery"]) | {rule["name"]["as"]}
    for expr in dashboard_queries():
        named |= promql_metrics(expr)
    missing = {n for n in named - EXTERNAL_METRICS if n not in exported and n.removesuffix("_total") not in exported}
    assert not missing, missing
    assert "lic_queue_depth_tiles" in named  # the HPA scales on a queue metric the service exports


def test_threads_follow_the_cgroup_cpu_quota(tmp_path):
    from service.core.config import available_cpus

    (tmp_path / "cpu.max").write_text("200000 100000\n")  # a pod limited to 2 CPUs
    assert available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path / "missing") == len(os.sched_getaffinity(0))
