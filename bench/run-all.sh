#!/usr/bin/env bash
# Runs every benchmark described in docs/benchmarks.md once and prints the results as Markdown
# (also saved under target/bench-results/).
#
# Usage: bench/run-all.sh [--quick] [--skip-size]
#   --quick      short runs with small counts: checks that every scenario works (~5 min)
#   --skip-size  skip the two extra release builds that show what lto/strip/codegen-units save
#
# Needs: wrk, python3 with prometheus_client, and optionally perf (installed below when missing:
# Debian's wrk and linux-perf packages, PyPI's prometheus_client). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

QUICK=0
SIZE=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --skip-size) SIZE=0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

mkdir -p target/bench-results
RESULTS="target/bench-results/run-$(date -u +%Y%m%dT%H%M%SZ).md"
exec > >(tee "$RESULTS")

step() {
    printf '\n<!-- %s -->\n' "$*" >&2
}

step "tools"
APT_UPDATED=0
apt_install() {
    if [[ $APT_UPDATED == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v wrk >/dev/null || apt_install wrk
command -v perf >/dev/null || apt_install linux-perf || true
python3 -c 'import prometheus_client' 2>/dev/null || python3 -m pip install --quiet prometheus_client
# 1,000 simulated Krakens and 1,000 wrk connections need a few thousand descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "# Benchmark run $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo '```'
echo "revision: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
echo "rustc: $(rustc -V)"
echo "kernel: $(uname -sr)"
echo "nproc: $(nproc)"
lscpu | grep -v "^Flags" | head -n 15
free -h
echo "wrk: $(wrk -v 2>&1 | head -n1 || true)"
echo "python: $(python3 -V 2>&1), prometheus_client $(python3 -c 'import importlib.metadata as m; print(m.version("prometheus_client"))')"
echo '```'

step "build"
cargo build --release --locked >&2
cargo bench --locked --no-run >&2

harness() {
    cargo bench --locked --bench harness -q -- "$@"
}

if [[ $QUICK == 1 ]]; then
    harness serve --assets 10,1000 --connections 1,16 --duration 1 --reps 1
    harness contention --duration 1 --reps 1
    harness memory --scrapes 5000 --accounts 100
    harness coalesce --connections 200 --duration 12
    harness accounts --accounts 10,100 --rounds 1
    harness startup --runs 5
    harness alloc --cases 1x10,1x100,10x50
    harness footprint --accounts 100
    harness stream --events 24 --sustained 12 --sim-minutes 10 --real-minutes 1
else
    harness serve
    harness contention
    harness memory
    harness coalesce
    harness accounts
    harness startup
    harness alloc
    harness footprint
    harness stream
fi

step "micro-benchmarks"
echo
echo "## criterion micro-benchmarks (cargo bench --bench kraken)"
echo
echo '```'
if [[ $QUICK == 1 ]]; then
    cargo bench --locked --bench kraken -q -- --warm-up-time 1 --measurement-time 1 2>&1 |
        grep -E '^[a-z0-9_]+/|time:|thrpt:' | grep -v '%' || true
else
    # Lines with a % compare with the previous run on this machine; they are left out.
    cargo bench --locked --bench kraken -q 2>&1 | grep -E '^[a-z0-9_]+/|time:|thrpt:' | grep -v '%' || true
fi
echo '```'

if [[ $SIZE == 1 ]]; then
    step "binary size variants"
    CARGO_PROFILE_RELEASE_STRIP=false \
        cargo build --release --locked --target-dir target/bench-variants/no-strip >&2
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo build --release --locked --target-dir target/bench-variants/plain >&2
    size_of() { stat -c %s "$1"; }
    released=$(size_of target/release/kraken_exporter)
    nostrip=$(size_of target/bench-variants/no-strip/release/kraken_exporter)
    plain=$(size_of target/bench-variants/plain/release/kraken_exporter)
    echo
    echo "## binary size"
    echo
    echo "| build | bytes | MiB | vs. release profile |"
    echo "|---|---|---|---|"
    for row in "release profile (lto, codegen-units=1, strip):$released" \
               "same without strip:$nostrip" \
               "no lto, codegen-units=16, no strip:$plain"; do
        name=${row%%:*}
        bytes=${row##*:}
        awk -v n="$name" -v b="$bytes" -v r="$released" \
            'BEGIN { printf "| %s | %d | %.2f | %.2f× |\n", n, b, b / 1048576, b / r }'
    done

    if command -v perf >/dev/null; then
        step "profile"
        for args in "--assets 100 --connections 16" "--assets 1000 --connections 4"; do
            # shellcheck disable=SC2086
            KRAKEN_EXPORTER_BIN=target/bench-variants/no-strip/release/kraken_exporter \
                harness profile $args || echo "(perf could not sample here)"
        done
    fi
fi

echo
echo "Saved to $RESULTS" >&2
