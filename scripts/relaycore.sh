#!/usr/bin/env bash
# The relay's CPU per GB against frps, with the relay's core on gVisor's
# netstack and on a kernel TUN (bench/cmd/relaycore; issue 18's question).
# Runs as root (a network namespace and a TUN device of its own, removed at
# the end), after make build; frps and frpc from scripts/bench-deps.sh.
# Each round: the real hubrelay, the bare relay on the netstack, the bare
# relay on a kernel TUN, frps; 1 GiB each, one line each. About 10 s a round.
#
# usage: scripts/relaycore.sh [BIN]   (BIN: folder with hubtunnel, hubrelay)
#   ROUNDS=4     rounds
#   STREAMS=1    parallel downloads (1 GiB in all)
#   CLOSED=1     hubrelay's hub answers with no length, ending by closing
#                (as make bench's bulk server does); default a Content-Length
set -euo pipefail
bin=$(realpath "${1:-bin}")
rounds=${ROUNDS:-4}
streams=${STREAMS:-1}
peers="${BENCH_PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/hubtunnel/bench-peers}"
ns=hubtunnel-relaycore
tmp=$(mktemp -d /tmp/relaycore.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

CGO_ENABLED=0 "${GO:-go}" build -o "$tmp/relaycore" ./bench/cmd/relaycore
ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
ip -n "$ns" link set lo up
# ip netns exec execs its command: $! of "ip netns exec … &" is the command.
in_ns=(ip netns exec "$ns")
rc="$tmp/relaycore"

"${in_ns[@]}" "$rc" -mode hub >"$tmp/hub.log" 2>&1 &
pids+=($!)
"${in_ns[@]}" "$rc" -mode backend >"$tmp/backend.log" 2>&1 &
pids+=($!)
cat >"$tmp/frps.toml" <<EOF
bindAddr = "127.0.0.1"
bindPort = 7000
proxyBindAddr = "127.0.0.1"
auth.token = "relaycore"
transport.tls.force = true
EOF
cat >"$tmp/frpc.toml" <<EOF
serverAddr = "127.0.0.1"
serverPort = 7000
auth.token = "relaycore"
transport.tls.enable = true
[[proxies]]
name = "zeros"
type = "tcp"
localIP = "127.0.0.1"
localPort = 8001
remotePort = 9100
EOF
"${in_ns[@]}" "$peers/frps" -c "$tmp/frps.toml" >"$tmp/frps.log" 2>&1 &
frps=$!
pids+=($frps)
sleep 1
"${in_ns[@]}" "$peers/frpc" -c "$tmp/frpc.toml" >"$tmp/frpc.log" 2>&1 &
pids+=($!)
sleep 2

for _ in $(seq "$rounds"); do
	"${in_ns[@]}" "$rc" -mode hubrelay -bin "$bin" -streams "$streams" -closed="${CLOSED:-0}"
	for v in netstack ktun; do
		"${in_ns[@]}" "$rc" -mode "relay-$v" >"$tmp/relay-$v.log" 2>&1 &
		relay=$!
		sleep 1
		"${in_ns[@]}" "$rc" -mode fetch -pid "$relay" -streams "$streams" -name "bare $v"
		kill "$relay"
		wait "$relay" 2>/dev/null || true
		ip -n "$ns" link del ht0 2>/dev/null || true
	done
	"${in_ns[@]}" "$rc" -mode fetch -addr 127.0.0.1:9100 -pid "$frps" -streams "$streams" -name frps
done
