#!/usr/bin/env bash
# deb-agent.sh VERSION OUTDIR: builds the agent's Debian package, for debmatic
# (a CCU on Debian, Raspberry Pi OS, Ubuntu …, which installs software
# through apt rather than the addon upload):
# OUTDIR/hubtunnel_<version>_<arch>.deb for each of ARCHS (Debian's names:
# amd64 arm64 armhf i386; default "amd64 arm64 armhf"). The files it
# installs are in packaging/hubtunnel/ (README.md, "debmatic and piVCCU").
set -euo pipefail
GO=${GO:-go}
version=${1:?usage: deb-agent.sh VERSION OUTDIR}
out=${2:?usage: deb-agent.sh VERSION OUTDIR}
archs=${ARCHS:-"amd64 arm64 armhf"}
src=packaging/hubtunnel

. "$(dirname "$0")/deb-lib.sh"
debversion=$(deb_version "$version")

mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in $archs; do
	goarm=
	case "$arch" in
	amd64 | arm64) goarch=$arch ;;
	# Raspberry Pi OS's armhf is ARMv6 (Pi 1 and Zero), Debian's ARMv7:
	# an ARMv6 build runs on both.
	armhf) goarch=arm goarm=6 ;;
	i386) goarch=386 ;;
	*) echo "deb-agent: unknown architecture $arch" >&2; exit 2 ;;
	esac
	root=$tmp/$arch
	install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
		"$root/usr/lib/hubtunnel" "$root/usr/share/hubtunnel" "$root/usr/share/doc/hubtunnel" \
		"$root/etc/lighttpd/conf-available" "$root/etc/config/addons"
	install -d -m 0700 "$root/etc/config/addons/hubtunnel"
	CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm "$GO" build -trimpath -tags "$(cat cmd/hubtunnel/build-tags)" \
		-ldflags "-s -w -X github.com/hubtunnel/hubtunnel/version.Version=$version" \
		-o "$root/usr/bin/hubtunnel" ./cmd/hubtunnel
	install -m 0644 "$src/hubtunnel.service" "$root/lib/systemd/system/hubtunnel.service"
	install -m 0755 "$src/ensure-config" "$root/usr/lib/hubtunnel/ensure-config"
	# The config: a conffile, and the default ensure-config puts back.
	install -m 0600 "$src/hubtunnel.toml" "$root/etc/config/addons/hubtunnel/hubtunnel.toml"
	install -m 0644 "$src/hubtunnel.toml" "$root/usr/share/hubtunnel/hubtunnel.toml"
	install -m 0644 "$src/lighttpd.conf" "$root/etc/lighttpd/conf-available/90-hubtunnel.conf"
	# The CCU addon's button editor, the same file.
	install -m 0644 addon/hubtunnel/lib/hm_addons.tcl "$root/usr/share/hubtunnel/hm_addons.tcl"
	install -m 0644 README.md "$root/usr/share/doc/hubtunnel/README.md"
	install -m 0755 "$src/postinst" "$src/prerm" "$src/postrm" "$root/DEBIAN/"
	printf '%s\n' /etc/config/addons/hubtunnel/hubtunnel.toml /etc/lighttpd/conf-available/90-hubtunnel.conf \
		>"$root/DEBIAN/conffiles"
	size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
	cat >"$root/DEBIAN/control" <<CONTROL
Package: hubtunnel
Version: $debversion
Architecture: $arch
Maintainer: hubtunnel developers <hubtunnel@users.noreply.github.com>
Installed-Size: $size
Depends: systemd
Enhances: debmatic
Section: net
Priority: optional
Homepage: https://github.com/hubtunnel/hubtunnel
Description: hubtunnel agent: remote access to a HomeMatic CCU without port forwarding
 The agent dials a hubtunnel relay over one outbound TCP port and carries a
 WireGuard tunnel; the hub's owner reaches its WebUI and XML-RPC ports
 through the relay, from anywhere. For debmatic: a button in the WebUI's
 control panel opens the settings panel (enrollment code, status, data
 usage), served by the agent through debmatic's lighttpd. On piVCCU install
 the CCU addon in the container instead.
CONTROL
	dpkg-deb --root-owner-group -Zxz --build "$root" "$out/hubtunnel_${debversion}_${arch}.deb" >/dev/null
	echo "$out/hubtunnel_${debversion}_${arch}.deb"
done
