#!/usr/bin/env bash
# Builds the release artifacts into dist/:
#   kraken_exporter-<version>-<target>.tar.gz   the stripped binary, LICENSE, README.md,
#                                               ARCHITECTURE.md, CONTRIBUTING.md,
#                                               CHANGELOG.md, SECURITY.md, docs/, examples/,
#                                               grafana/ and mixin/
#   kraken-exporter_<version>-1_<arch>.deb      with --deb (needs cargo-deb)
#   SHA256SUMS                                  of every artifact above; check with
#                                               (cd dist && sha256sum -c SHA256SUMS)
#
#   scripts/release.sh [--deb]
#
# The archive is reproducible for a given binary: entries are sorted, owned by root and dated
# by the last commit (SOURCE_DATE_EPOCH).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

with_deb=false
case "${1:-}" in
    --deb) with_deb=true ;;
    "") ;;
    *)
        echo "usage: $0 [--deb]" >&2
        exit 2
        ;;
esac

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
target=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-target}
name="kraken_exporter-${version}-${target}"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

cargo build --release --locked
binary="$target_dir/release/kraken_exporter"

# The release profile strips symbols (strip = true); refuse to ship a binary that kept them.
if command -v readelf >/dev/null && readelf -S "$binary" | grep -q '\.symtab'; then
    echo "$binary still has a symbol table: is strip = true in [profile.release]?" >&2
    exit 1
fi
"$binary" --version

rm -rf dist
mkdir -p "dist/$name"
cp "$binary" LICENSE README.md CHANGELOG.md SECURITY.md ARCHITECTURE.md CONTRIBUTING.md "dist/$name/"
cp -r docs examples grafana mixin "dist/$name/"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C dist -czf "dist/$name.tar.gz" "$name"
rm -rf "dist/${name:?}"

if $with_deb; then
    cargo deb --locked --no-build --output dist/
fi

(cd dist && sha256sum -- *.tar.gz $(ls -- *.deb 2>/dev/null) > SHA256SUMS)
echo "dist/:"
ls -l dist
