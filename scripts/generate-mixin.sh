#!/usr/bin/env bash
# Rewrites the checked-in monitoring files, the output of `kraken_exporter mixin` with its
# default settings, after a change to the templates in mixin/:
#   examples/prometheus/alerts.yml, examples/prometheus/recording.yml,
#   examples/kubernetes/prometheusrule.yaml and grafana/kraken-exporter.json.
# `cargo test` fails while they differ from what the templates give. To adapt the files to your
# Prometheus, run the installed binary instead: kraken_exporter mixin --out DIR --job-selector ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --quiet --locked --bin kraken_exporter -- mixin --out "$out"
cp "$out/alerts.yml" "$out/recording.yml" examples/prometheus/
cp "$out/prometheusrule.yaml" examples/kubernetes/
cp "$out/kraken-exporter.json" grafana/
git --no-pager diff --stat -- examples/prometheus examples/kubernetes grafana 2>/dev/null || true
