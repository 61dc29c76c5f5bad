#!/usr/bin/env python3
"""The comparison point for serving /metrics: the same balances exported the usual Python way.

A custom collector built on prometheus_client yields the exporter's families (kraken_balance,
kraken_balance_hold, kraken_up, kraken_last_success_timestamp_seconds, kraken_api_key_permission,
kraken_exporter_build_info) from a cached snapshot at every scrape, like the Rust exporter does,
and the request counters live in ordinary Counter/Histogram objects. It is served by
prometheus_client's own start_http_server, as most Python exporters are.

Usage: python_exporter.py --port PORT --data balances.json
balances.json: {"account": "bench", "balances": [{"asset": "XBT", "code": "XXBT",
"total": 1.5, "hold": 0.1}, ...]}
"""

import argparse
import json
import signal
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

REASONS = [
    "invalid_key", "invalid_signature", "invalid_nonce", "permission_denied", "rate_limited",
    "lockout", "unavailable", "timeout", "http", "decode", "other",
]
PERMISSIONS = {
    "funds_query": 1, "funds_deposit": 0, "funds_withdraw": 0,
    "orders_query": 0, "orders_create": 0, "orders_cancel": 0,
}


class SnapshotCollector:
    """Builds the balance families from the snapshot at every collect(), as a scrape does."""

    def __init__(self, account, balances):
        self.account = account
        self.balances = balances
        self.fetched_at = time.time()

    def collect(self):
        account = self.account
        balance = GaugeMetricFamily(
            "kraken_balance", "Total balance of the asset on the Kraken account.",
            labels=["account", "asset", "code"])
        hold = GaugeMetricFamily(
            "kraken_balance_hold", "Part of the balance held by open orders.",
            labels=["account", "asset", "code"])
        for entry in self.balances:
            labels = [account, entry["asset"], entry["code"]]
            balance.add_metric(labels, entry["total"])
            if entry.get("hold") is not None:
                hold.add_metric(labels, entry["hold"])
        up = GaugeMetricFamily("kraken_up", "1 if the latest refresh succeeded.",
                               labels=["account"])
        up.add_metric([account], 1)
        last = GaugeMetricFamily("kraken_last_success_timestamp_seconds",
                                 "Unix time of the latest successful refresh.",
                                 labels=["account"])
        last.add_metric([account], self.fetched_at)
        permission = GaugeMetricFamily("kraken_api_key_permission",
                                       "1 if the API key has the permission.",
                                       labels=["account", "permission"])
        for name, granted in sorted(PERMISSIONS.items()):
            permission.add_metric([account, name], granted)
        build = GaugeMetricFamily("kraken_exporter_build_info", "Always 1.",
                                  labels=["version", "revision"])
        build.add_metric(["0.1.0", "bench"], 1)
        yield from (balance, hold, up, last, permission, build)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    with open(args.data, encoding="utf-8") as handle:
        data = json.load(handle)

    registry = CollectorRegistry()
    requests = Counter("kraken_requests", "Calls made to Kraken.", ["account", "endpoint"],
                       registry=registry)
    errors = Counter("kraken_request_errors", "Calls to Kraken that failed.",
                     ["account", "endpoint", "reason"], registry=registry)
    duration = Histogram("kraken_request_duration_seconds", "Time of a call to Kraken.",
                         ["account", "endpoint"], registry=registry,
                         buckets=[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
    for endpoint in ("BalanceEx", "GetApiKeyInfo"):
        requests.labels(data["account"], endpoint).inc()
        duration.labels(data["account"], endpoint).observe(0.06)
        for reason in REASONS:
            errors.labels(data["account"], endpoint, reason)
    registry.register(SnapshotCollector(data["account"], data["balances"]))

    start_http_server(args.port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
