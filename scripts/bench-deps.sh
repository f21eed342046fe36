#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make test`'s deps when it is
# missing: tshark (counts the agent connection's bytes on the wire), and for
# the peers phase wrk (req/s), OpenSSH's sshd (ssh -R), and frp and chisel,
# built at pinned versions into $BENCH_PEERS (default
# ${XDG_CACHE_HOME:-~/.cache}/hubtunnel/bench-peers), outside our go.mod.
# A peer that fails to build leaves its error in $BENCH_PEERS/TOOL.err and
# the bench reports it in its row; the rest of the bench goes on.
set -euo pipefail
. "$(dirname "$0")/apt-lib.sh"

need=() # the bench stops without these
want=() # the peers phase reports a peer "not installed" without these
have() { command -v "$1" >/dev/null 2>&1; }
have tshark || need+=(tshark)
have wrk    || want+=(wrk)
# Where systemd runs, Debian's package also enables the system's ssh
# service; the bench only ever starts an sshd of its own on loopback.
[ -x /usr/sbin/sshd ] || want+=(openssh-server)
have ssh    || want+=(openssh-client)

if [ "$(id -u)" -ne 0 ]; then
	if [ ${#need[@]} -gt 0 ]; then
		echo "bench-deps: missing ${need[*]}; run as root or install them (apt-get install ${need[*]})" >&2
		exit 1
	fi
	if [ ${#want[@]} -gt 0 ]; then
		echo "bench-deps: missing ${want[*]}: the peers phase goes without (apt-get install ${want[*]} as root)" >&2
	fi
	want=()
fi
need+=("${want[@]}")
if [ ${#need[@]} -gt 0 ]; then
	apt_install bench-deps "${need[@]}"
fi
go mod download

# frp and chisel, pinned. Each is built in its own module's folder in the
# module cache, with its own go.mod and go.sum (the versions it was released
# with, and frp's replace of yamux by its own fork, which `go install
# pkg@version` refuses); `go install pkg@version` also needs the module
# proxy's version list for its deprecation check, which not every proxy serves.
peers="${BENCH_PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/hubtunnel/bench-peers}"
mkdir -p "$peers"
build_peer() { # tool module version package…
	local tool=$1 module=$2 version=$3
	shift 3
	# Built in its own module, a binary says "(devel)" for its version:
	# TOOL.version beside it says which it is.
	if [ "$(cat "$peers/$tool.version" 2>/dev/null)" = "$module $version" ]; then
		return 0
	fi
	echo "bench-deps: building $tool $version into $peers"
	rm -f "$peers/$tool.err" "$peers/$tool.version"
	local json src
	json=$(go mod download -json "$module@$version" 2>&1) || true
	src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$json")
	if [ -z "$src" ]; then
		# go mod download -json says what went wrong in "Error".
		echo "go mod download $module@$version failed: $(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | tail -n 1)" >"$peers/$tool.err"
		echo "bench-deps: $tool not built (see $peers/$tool.err)" >&2
		return 0
	fi
	local pkg
	for pkg in "$@"; do
		local out=${pkg##*/}
		[ "$out" = . ] && out=$tool
		if ! (cd "$src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$peers/$out" "$pkg") >>"$peers/$tool.err" 2>&1; then
			echo "go build $module/$pkg@$version failed" >>"$peers/$tool.err"
			echo "bench-deps: $tool not built (see $peers/$tool.err)" >&2
			return 0
		fi
	done
	rm -f "$peers/$tool.err"
	echo "$module $version" >"$peers/$tool.version"
}
build_peer frp github.com/fatedier/frp v0.66.0 ./cmd/frps ./cmd/frpc
build_peer chisel github.com/jpillora/chisel v1.11.3 .
