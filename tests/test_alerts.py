"""Alert rules checked offline: promtool's syntax check and the unit tests with series
(deploy/prometheus/alerts.test.yml), the compose Prometheus config that loads them, the PrometheusRule
(deploy/k8s/monitoring) holding the same groups, and every lic_* metric they name being one the service
exports. promtool comes with Debian's prometheus package, which `make test` installs."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from service.core.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (make test installs Debian's prometheus package, which has it)"
    out = subprocess.run([binary, *args], capture_output=True, text=True, cwd=RULES.parent, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules_and_the_config_that_loads_them():
    assert "SUCCESS: 13 rules found" in promtool("check", "rules", RULES.name)
    config = yaml.safe_load((RULES.parent / "prometheus.yml").read_text())
    assert RULES.name in config["rule_files"]
    assert "SUCCESS: 13 rules found" in promtool("check", "config", "prometheus.yml")  # with the rule files it names


def test_promtool_unit_tests_pass_and_cover_every_alert():
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")
    tests = yaml.safe_load((RULES.parent / "alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for test in tests for t in test["alert_rule_test"] if t["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules()}


def test_prometheusrule_holds_the_same_groups():
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed"
    built = subprocess.run([kubectl, "kustomize", str(DEPLOY / "k8s" / "monitoring")], capture_output=True, text=True, check=True).stdout
    (rule,) = [d for d in yaml.safe_load_all(built) if d]
    assert rule["kind"] == "PrometheusRule" and rule["metadata"]["labels"]["release"] == "prometheus"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], "run deploy/k8s/monitoring/generate.sh"


def test_every_lic_metric_in_the_rules_is_exported():
    exported = {m.name for m in Metrics().registry.collect()}  # counters without their _total suffix
    for rule in rules():
        for name in re.findall(r"\blic_[a-z_]+", rule["expr"]):
            base = re.sub(r"_(bucket|sum|count|total)$", "", name)
            assert base in exported, (rule["alert"], name)
