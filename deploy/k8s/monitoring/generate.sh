#!/usr/bin/env bash
# Writes prometheusrule.yaml from deploy/prometheus/alerts.yml: its header, then alerts.yml's groups under spec.
set -euo pipefail
cd "$(dirname "$0")"
{ sed -n '1,/^spec:$/p' prometheusrule.yaml; sed -n '/^groups:/,$p' ../../prometheus/alerts.yml | sed 's/^/  /'; } > prometheusrule.yaml.new
mv prometheusrule.yaml.new prometheusrule.yaml
