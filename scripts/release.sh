#!/usr/bin/env bash
# release.sh VERSION KEYFILE OUTDIR: builds the agent for every architecture
# at VERSION, stamped with KEYFILE's public key (each release trusts the key
# that signed it), gzips each into OUTDIR/hubtunnel-VERSION-linux-ARCH.gz
# and signs OUTDIR/manifest-VERSION.json (and manifest.json, when newest).
# The CCU addon package of the same binaries, hubtunnel-VERSION.tgz, goes
# into OUTDIR as well.
# ARCHS="amd64" limits the architectures (tests do).
# MIN_VERSION=M signs M as the releases' floor: agents refuse to install
# anything older, even as an explicit downgrade (hubrelease sign --min-version).
set -euo pipefail
GO=${GO:-go}
version=${1:-}
key=${2:-}
out=${3:-dist/releases}
archs=${ARCHS:-"armv6 armv7 arm64 386 amd64"}
min=${MIN_VERSION:-}

if [ -z "$version" ] || [ -z "$key" ]; then
	echo "usage: make release VERSION=0.2.0 KEY=release.key [OUT=dist/releases]" >&2
	echo "       (a key: go run ./cmd/hubrelease keygen release.key)" >&2
	exit 2
fi
case "$version" in
*-dev.*) echo "release: VERSION=$version is a development version; give the release's, e.g. VERSION=0.2.0" >&2; exit 2 ;;
esac
pub=$("$GO" run ./cmd/hubrelease pubkey "$key")
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for arch in $archs; do
	goarm=
	case "$arch" in
	armv5) goarch=arm goarm=5 ;;
	armv6) goarch=arm goarm=6 ;;
	armv7) goarch=arm goarm=7 ;;
	arm64 | 386 | amd64) goarch=$arch ;;
	*) echo "release: unknown architecture $arch" >&2; exit 2 ;;
	esac
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm "$GO" build -trimpath -tags "$(cat cmd/hubtunnel/build-tags)" \
		-ldflags "-s -w -X github.com/hubtunnel/hubtunnel/version.Version=$version -X github.com/hubtunnel/hubtunnel/selfupdate.releaseKey=$pub" \
		-o "$tmp/hubtunnel-$arch" ./cmd/hubtunnel
	gzip -9n <"$tmp/hubtunnel-$arch" >"$out/hubtunnel-$version-linux-$arch.gz"
	printf 'release: %-6s %s bytes, %s gzipped\n' "$arch" "$(stat -c %s "$tmp/hubtunnel-$arch")" "$(stat -c %s "$out/hubtunnel-$version-linux-$arch.gz")"
done
"$GO" run ./cmd/hubrelease sign --key "$key" --version "$version" --dir "$out" ${min:+--min-version "$min"}
ARCHS="$archs" BINDIR="$tmp" GO="$GO" scripts/addon.sh "$version" "$out"
