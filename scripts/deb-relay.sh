#!/usr/bin/env bash
# deb-relay.sh VERSION OUTDIR: builds the relay's Debian package,
# OUTDIR/hubrelay_<version>_<arch>.deb, for each of ARCHS (Debian's names:
# amd64 arm64 armhf i386; default "amd64 arm64 armhf"). The files it
# installs are in packaging/hubrelay/ (README.md, "Running a relay").
set -euo pipefail
GO=${GO:-go}
version=${1:?usage: deb-relay.sh VERSION OUTDIR}
out=${2:?usage: deb-relay.sh VERSION OUTDIR}
archs=${ARCHS:-"amd64 arm64 armhf"}
src=packaging/hubrelay

. "$(dirname "$0")/deb-lib.sh"
debversion=$(deb_version "$version")

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in $archs; do
	goarm=
	case "$arch" in
	amd64 | arm64) goarch=$arch ;;
	armhf) goarch=arm goarm=7 ;;
	i386) goarch=386 ;;
	*) echo "deb-relay: unknown architecture $arch" >&2; exit 2 ;;
	esac
	root=$tmp/$arch
	install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
		"$root/usr/lib/sysusers.d" "$root/etc/hubrelay" "$root/usr/share/doc/hubrelay"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm "$GO" build -trimpath \
		-ldflags "-s -w -X github.com/hubtunnel/hubtunnel/version.Version=$version" \
		-o "$root/usr/bin/hubrelay" ./cmd/hubrelay
	install -m 0644 "$src/hubrelay.service" "$root/lib/systemd/system/hubrelay.service"
	install -m 0644 "$src/sysusers.conf" "$root/usr/lib/sysusers.d/hubrelay.conf"
	install -m 0644 "$src/relay.toml" "$root/etc/hubrelay/relay.toml"
	install -m 0644 README.md "$root/usr/share/doc/hubrelay/README.md"
	install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
	echo /etc/hubrelay/relay.toml >"$root/DEBIAN/conffiles"
	size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
	cat >"$root/DEBIAN/control" <<CONTROL
Package: hubrelay
Version: $debversion
Architecture: $arch
Maintainer: hubtunnel developers <hubtunnel@users.noreply.github.com>
Installed-Size: $size
Depends: systemd
Section: net
Priority: optional
Homepage: https://github.com/hubtunnel/hubtunnel
Description: hubtunnel relay: remote access to smart-home hubs
 The relay that hubtunnel agents on HomeMatic CCUs and other hubs dial out
 to, carrying a WireGuard tunnel; their owners reach the hubs' WebUI and
 XML-RPC ports through it, with logins, grants and app tokens. Runs as the
 system user hubrelay under a hardened systemd unit.
CONTROL
	dpkg-deb --root-owner-group -Zxz --build "$root" "$out/hubrelay_${debversion}_${arch}.deb" >/dev/null
	echo "$out/hubrelay_${debversion}_${arch}.deb"
done
