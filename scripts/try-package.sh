#!/usr/bin/env bash
# Installs the Debian package from dist/ (built by scripts/release.sh --deb) with dpkg, checks
# that it printed the next steps and what it installed (the README's docs/ links included),
# writes the monitoring files with the installed binary, runs the installed /usr/bin/kraken_exporter in demo mode on a free
# localhost port, checks that /metrics answers with kraken_ metrics, then purges the package.
# Needs root and a Debian-based system; changes the system (a package and a system user) while
# it runs, and leaves nothing behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

deb=$(ls dist/kraken-exporter_*.deb)
install_output=$(dpkg -i "$deb" 2>&1)
echo "$install_output"

fail() {
    echo "try-package: $*" >&2
    exit 1
}
cleanup() {
    if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi
    if dpkg -s kraken-exporter >/dev/null 2>&1; then
        dpkg --purge kraken-exporter >/dev/null || true
    fi
    rm -f "${log:-}"
}
trap cleanup EXIT

test -x /usr/bin/kraken_exporter || fail "no /usr/bin/kraken_exporter"
test -f /usr/lib/systemd/system/kraken_exporter.service || fail "no systemd unit"
grep -q -- '--web.listen-address=127.0.0.1:10987' /usr/lib/systemd/system/kraken_exporter.service \
    || fail "the unit does not bind 127.0.0.1:10987"
test -f /etc/kraken_exporter/kraken_exporter.yml || fail "no /etc/kraken_exporter/kraken_exporter.yml"
echo "$install_output" | grep -q 'kraken_exporter mixin --out' || fail "dpkg -i printed no next steps"
test -f /usr/share/doc/kraken-exporter/docs/runbook.md || fail "no runbook where the alerts link"
# Every docs/... link of the installed README leads to an installed file.
for link in $(grep -o '](docs/[^)#]*' /usr/share/doc/kraken-exporter/README.md | cut -c3- | sort -u); do
    test -f "/usr/share/doc/kraken-exporter/$link" || fail "the installed README links to $link, which is not installed"
done
getent passwd kraken_exporter >/dev/null || fail "no kraken_exporter system user"
[ "$(stat -c %U /var/lib/kraken_exporter)" = kraken_exporter ] || fail "state directory not owned by kraken_exporter"
/usr/bin/kraken_exporter --version
mixin_dir=$(mktemp -d)
/usr/bin/kraken_exporter mixin --out "$mixin_dir" --job-selector 'job="kraken"' >/dev/null
grep -q 'job="kraken"' "$mixin_dir/alerts.yml" || fail "kraken_exporter mixin did not apply --job-selector"
rm -rf "$mixin_dir"

# The packaged configuration parses (credentials are not there yet: exactly those problems).
if out=$(/usr/bin/kraken_exporter --config.file /etc/kraken_exporter/kraken_exporter.yml --config.check 2>&1); then
    fail "--config.check passed without credentials: $out"
fi
echo "$out" | grep -q 'credentials/api_key' || fail "unexpected --config.check output: $out"

log=$(mktemp)
/usr/bin/kraken_exporter --demo --web.listen-address 127.0.0.1:0 2>"$log" &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(grep listening "$log" | grep -o '127\.0\.0\.1:[0-9]*' | head -n 1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the installed binary exited: $(cat "$log")"
    sleep 0.1
done
[ -n "$port" ] || fail "no listening line in: $(cat "$log")"

# GET /metrics over bash's /dev/tcp: no HTTP client needed.
body=""
for _ in $(seq 1 50); do
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    body=$(timeout 10 cat <&3 || true)
    exec 3<&-
    if echo "$body" | grep -q '^kraken_balance{'; then
        break
    fi
    sleep 0.2
done
echo "$body" | head -n 1 | grep -q ' 200 ' || fail "/metrics did not answer 200: $(echo "$body" | head -n 5)"
echo "$body" | grep -q '^kraken_balance{' || fail "/metrics has no kraken_balance: $body"
echo "$body" | grep -q '^kraken_up{account="default"} 1' || fail "/metrics: demo account not up: $body"
echo "try-package: installed binary served $(echo "$body" | grep -c '^kraken_') kraken_ samples on 127.0.0.1:$port"

kill "$pid"
wait "$pid" || true
pid=""
dpkg --purge kraken-exporter
! getent passwd kraken_exporter >/dev/null || fail "purge left the kraken_exporter user"
test ! -e /usr/bin/kraken_exporter || fail "purge left /usr/bin/kraken_exporter"
echo "try-package: installed, served and purged"
