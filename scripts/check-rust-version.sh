#!/usr/bin/env bash
# Checks that rust-version in Cargo.toml is at least the highest rust-version declared by the
# locked dependencies whose sources Cargo has downloaded (run after a build), and at least 1.85,
# the first release with edition 2024. Prints the dependencies that set the bar.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

declared=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
registry="${CARGO_HOME:-$HOME/.cargo}/registry/src"

needs=$(
    awk '/^\[\[package\]\]/ { name = "" } /^name = / { gsub(/"/, "", $3); name = $3 }
         /^version = / { gsub(/"/, "", $3); if (name != "") print name "-" $3 }' Cargo.lock |
        while read -r crate; do
            for manifest in "$registry"/*/"$crate"/Cargo.toml; do
                [ -f "$manifest" ] || continue
                version=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$manifest" | head -n 1)
                [ -n "$version" ] && echo "$version $crate"
                break
            done
        done | sort -V
)
[ -n "$needs" ] || { echo "no dependency sources under $registry: build first" >&2; exit 1; }
# Versions as three numbers, so 1.88 and 1.88.0 compare equal.
normalize() {
    awk '{ n = split($1, v, "."); printf "%d.%d.%d", v[1], v[2], (n > 2 ? v[3] : 0); $1 = ""; print $0 }'
}
needs=$(printf '%s\n1.85 edition-2024\n' "$needs" | normalize | sort -V)
highest=$(echo "$needs" | tail -n 1 | cut -d' ' -f1)
wanted=$(echo "$declared" | normalize | tr -d ' ')
echo "rust-version declared: $declared; highest needed: $highest, by:"
echo "$needs" | awk -v h="$highest" '$1 == h { print "  " $2 }'
if [ "$(printf '%s\n%s\n' "$wanted" "$highest" | sort -V | head -n 1)" != "$highest" ]; then
    echo "Cargo.toml declares rust-version $declared, below $highest: raise it (and docs/deployment.md)" >&2
    exit 1
fi
