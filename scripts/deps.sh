#!/usr/bin/env bash
# Installs what `make test` needs when it is missing: Debian packages for the
# real peers (wireguard-go, wg, ip, tinyproxy, squid-openssl, dnsmasq, python3,
# curl), a packet capture (tshark), the shells a CCU has for the addon scripts
# (busybox, tclsh), PostgreSQL for the store's tests, Chromium and Node.js for
# the browser tests, the Go modules, and the browser tests' npm package
# (playwright-core, pinned by e2e/browser/package-lock.json, into
# e2e/browser/node_modules). (The Makefile's pinned staticcheck comes with
# `go run`, outside go.mod.)
set -euo pipefail
. "$(dirname "$0")/apt-lib.sh"
cd "$(dirname "$0")/.." # the module root

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have wireguard-go || need+=(wireguard-go)
have wg           || need+=(wireguard-tools)
have ip           || need+=(iproute2)
# The network-fault tests (e2e/netem_test.go) drop packets with nftables where
# the kernel has no sch_netem for tc (loss, blackhole).
have nft          || [ -x /usr/sbin/nft ] || need+=(nftables)
have tinyproxy    || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || need+=(tinyproxy-bin)
# squid with SSL bump: a TLS-inspecting proxy that re-signs with its own CA
# (e2e/tls_test.go); security_file_certgen makes its certificates.
[ -x /usr/lib/squid/security_file_certgen ] || need+=(squid-openssl)
# dnsmasq-base: the resolver alone, without the package that starts a system daemon.
have dnsmasq      || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
have python3      || need+=(python3)
have curl         || need+=(curl) # the printed app lines are run as a user would
# e2e/stats_test.go holds the agent's traffic record against a capture of its
# connection: dumpcap captures, tshark reads (both from Debian's tshark).
{ have dumpcap && have tshark; } || need+=(tshark)
# The addon's scripts run under busybox sh and tclsh on a CCU; addon/ tests them there.
have busybox      || [ -x /bin/busybox ] || need+=(busybox-static)
have tclsh        || need+=(tcl)
# The addon's lighttpd snippet is tested with a real lighttpd (the CCU's web server).
have lighttpd     || [ -x /usr/sbin/lighttpd ] || need+=(lighttpd)
# The addon's ARM binaries run under qemu user emulation in e2e/qemu_test.go.
have qemu-arm-static || need+=(qemu-user-static)
# The store's tests start their own PostgreSQL server (store/pgtest); Debian
# keeps initdb and postgres in /usr/lib/postgresql/VERSION/bin, off PATH.
have initdb       || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# The browser tests (e2e/browser_test.go) drive Debian's Chromium with
# playwright-core, which never downloads a browser of its own.
[ -x /usr/bin/chromium ] || need+=(chromium)
# Chromium only recommends fonts; the screenshots the tests keep need some.
[ -d /usr/share/fonts/truetype/liberation ] || need+=(fonts-liberation)
# The relay's packages (e2e/relaypackage_test.go): umoci unpacks and checks
# the OCI image; the image carries the CA certificates.
have umoci        || need+=(umoci)
have runc         || need+=(runc) # runs the image as a container runtime does
have systemd-sysusers || need+=(systemd) # the .deb's postinst; systemd-analyze verify
[ -r /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
# The ACME tests (e2e/acme_test.go): BIND as the RFC 2136 DNS server that
# Pebble checks DNS-01 challenges at; certutil for a browser's NSS trust store.
[ -x /usr/sbin/named ] || need+=(bind9)
have certutil     || need+=(libnss3-tools)
have node         || need+=(nodejs)
have npm          || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need[*]}; run as root or install them (apt-get install ${need[*]})" >&2
		exit 1
	fi
	apt_install deps "${need[@]}"
fi
go mod download

# Pebble, the ACME test CA, pinned, built outside go.mod into the user's
# cache (e2e/acme_test.go looks there), with the test certificates of its
# own HTTPS from the same module.
pebble_version=v2.10.3
pebble_dir="${XDG_CACHE_HOME:-$HOME/.cache}/hubtunnel/pebble-$pebble_version"
if [ ! -x "$pebble_dir/pebble" ]; then
	echo "deps: building Pebble $pebble_version into $pebble_dir"
	mkdir -p "$pebble_dir"
	GOBIN="$pebble_dir" GOFLAGS=-mod=mod go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$pebble_version"
	src=$(cd "$pebble_dir" && go mod download -json "github.com/letsencrypt/pebble/v2@$pebble_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	cp -r "$src/test/certs" "$pebble_dir/certs"
	chmod -R u+w "$pebble_dir/certs"
fi

# playwright-core, exactly as e2e/browser/package-lock.json pins it, once per
# change of the lock file (npm ci starts from an empty node_modules).
browser=e2e/browser
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.hubtunnel-lock"; then
	echo "deps: installing $browser/node_modules (npm ci)"
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/dev/null
	cp "$browser/package-lock.json" "$browser/node_modules/.hubtunnel-lock"
fi
