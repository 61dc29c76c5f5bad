#!/usr/bin/env bash
# Regenerates the monitoring files from the templates and settings in mixin/:
#   examples/prometheus/alerts.yml, examples/prometheus/recording.yml,
#   examples/kubernetes/prometheusrule.yaml and grafana/kraken-exporter.json.
# Edit mixin/config.yml (job selector, runbook address) or the templates in mixin/, run this,
# and commit the templates and the generated files together. `cargo test` fails while they
# differ. The generator is the test module tests/it/mixin.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
UPDATE_MIXIN=1 cargo test --locked --test it -- mixin:: --quiet
git --no-pager diff --stat -- examples/prometheus examples/kubernetes grafana 2>/dev/null || true
