#!/usr/bin/env bash
# Builds the installable CCU addon: OUTDIR/hubtunnel-VERSION.tgz.
#
#   scripts/addon.sh VERSION OUTDIR
#
# VERSION is what the CCU shows and compares: one lower-case word.
# Knobs (environment):
#   ARCHS          binaries to build, default "armv6 armv7 arm64 386 amd64"
#                  (armv5 is possible, for a CCU2, but not built by default:
#                  Go needs Linux 3.2 or later)
#   EXTRA_LDFLAGS  appended to the linker flags, e.g. more -X stamps
#   BINDIR         take hubtunnel-<arch> from this folder instead of building
#                  (tests put stand-ins there)
#   GO             the go command, default go
#   SOURCE_DATE_EPOCH  mtime of every file in the archive, default the last
#                  commit's time
#
# The archive holds update_script (executable) at the top, hubtunnel.sha256
# (checked by the CCU's install_addon before it runs update_script) and the
# hubtunnel/ folder that update_script installs from. Names are sorted,
# owner and group are 0, mtimes fixed, gzip without a name or timestamp: the
# same inputs give the same bytes.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 VERSION OUTDIR" >&2
	exit 2
fi
version=$1
outdir=$2
if ! [[ $version =~ ^[0-9a-z.+-]{1,40}$ ]]; then
	echo "addon: version \"$version\" must be one lower-case word ([0-9a-z.+-], at most 40 characters)" >&2
	exit 2
fi

GO=${GO:-go}
ARCHS=${ARCHS:-armv6 armv7 arm64 386 amd64}
EXTRA_LDFLAGS=${EXTRA_LDFLAGS:-}
BINDIR=${BINDIR:-}
root=$(cd "$(dirname "$0")/.." && pwd)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
mkdir -p "$pkg"
cp "$root/addon/update_script" "$pkg/update_script"
cp -R "$root/addon/hubtunnel" "$pkg/hubtunnel"
mkdir -p "$pkg/hubtunnel/bin"
echo "$version" >"$pkg/hubtunnel/VERSION"

for arch in $ARCHS; do
	out=$pkg/hubtunnel/bin/hubtunnel-$arch
	if [ -n "$BINDIR" ]; then
		cp "$BINDIR/hubtunnel-$arch" "$out"
		continue
	fi
	goarm=''
	case $arch in
	armv5) goarch=arm goarm=5 ;;
	armv6) goarch=arm goarm=6 ;;
	armv7) goarch=arm goarm=7 ;;
	arm64) goarch=arm64 ;;
	386) goarch=386 ;;
	amd64) goarch=amd64 ;;
	*)
		echo "addon: unknown arch $arch (armv5 armv6 armv7 arm64 386 amd64)" >&2
		exit 2
		;;
	esac
	echo "addon: building hubtunnel-$arch"
	(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm \
		"$GO" build -trimpath -tags "$(cat cmd/hubtunnel/build-tags)" \
		-ldflags "-s -w -X github.com/hubtunnel/hubtunnel/version.Version=$version $EXTRA_LDFLAGS" \
		-o "$out" ./cmd/hubtunnel)
done

# Modes: programs and scripts 755, everything else 644.
find "$pkg" -type d -exec chmod 755 {} +
find "$pkg" -type f -exec chmod 644 {} +
chmod 755 "$pkg/update_script" "$pkg/hubtunnel/rc.d/hubtunnel" "$pkg"/hubtunnel/bin/*

(cd "$pkg" && find update_script hubtunnel -type f | LC_ALL=C sort | xargs sha256sum >hubtunnel.sha256)

mkdir -p "$outdir"
tgz=$outdir/hubtunnel-$version.tgz
(cd "$pkg" && tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
	--owner=0 --group=0 --numeric-owner --format=gnu \
	-cf - update_script hubtunnel.sha256 hubtunnel) | gzip -n -9 >"$tgz.tmp"
mv -f "$tgz.tmp" "$tgz"

size=$(wc -c <"$tgz")
echo "addon: wrote $tgz ($((size / 1024)) KiB, $size bytes)"
