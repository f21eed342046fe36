#!/usr/bin/env bash
# make bench: measures every budget of BRIEF.md with the real binaries on
# loopback, prints one table and writes BENCHMARKS.md. Takes about 32 minutes:
# the wire-bytes phase (2 min to a rekey, 80 s, then the 5-minute idle
# window) runs beside the other phases: the TCP hubs (about 7 minutes, most
# of it waiting for idle peers to go), the UDP hubs (about 12: 100,000 start
# in about 4.5 minutes, 150 s idle, then a relay restart and their return),
# the rest (about 3) and the peers phase (about 8.5: its 2-minute idle
# window, then 3 rounds of 7 peers).
#
# usage: scripts/bench.sh [BIN]   (BIN: folder with hubtunnel, hubrelay, ccusim)
#
# Knobs, for a quicker look (the defaults are what BENCHMARKS.md reports):
#   IDLE=5m      idle window for the idle-traffic figure (0 skips rekey and idle)
#   HUBS=10000   TCP hubs connected to one relay, 0–100000 within the file
#                descriptor limit (ulimit -n less 500; 0 skips)
#   UDP_HUBS=100000 idle UDP hubs on one relay, at most 200,000; light hubs,
#                in as many fleet processes as the descriptor limit needs, at
#                nice 19 (0 skips; 100,000 take about 12 minutes)
#   UDP_HUB_RATE=400 UDP hubs started a second (10–5000)
#   DUR=5s       each throughput measurement (after 1 s of warm-up)
#   CALLS=2000   XML-RPC calls timed per path
#   SESSIONS=200 concurrent sessions through one hub
#   PROFILE=1    profile the in-process model of the path (0 skips)
#   OUT=BENCHMARKS.md
#   PHASES=all   phases to run, comma-separated: size,main,access,hubs,udphubs,profile,bytes,peers
#                (PHASES=peers runs only the comparison with frp, chisel and OpenSSH)
#   ROUNDS=3     interleaved rounds of the peers phase (0 skips it)
#   PEERS_IDLE=2m idle window of the peers phase, every peer at once (0 skips it)
#   BASE=        folder with another build (hubtunnel, hubrelay, ccusim; an earlier
#                commit's make build) that the peers phase measures beside BIN, in
#                the same rounds: rows "hubtunnel tcp (base)" and "hubtunnel udp (base)"
#   PEER_GROUPS=all the peers phase's peers: all, or some of
#                direct,two-hop,hubtunnel,base,frp,chisel,ssh (base needs BASE)
set -euo pipefail
bin=${1:-bin}
export BENCH_PEERS="${BENCH_PEERS:-${XDG_CACHE_HOME:-$HOME/.cache}/hubtunnel/bench-peers}"
scripts/bench-deps.sh

profile_dir="${TMPDIR:-/tmp}/hubtunnel-bench-profile"
if [ "${PROFILE:-1}" = 0 ]; then profile_dir=""; fi

tmp=$(mktemp -d /tmp/hubbench-bin.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 "${GO:-go}" build -o "$tmp/hubbench" ./bench/cmd/hubbench
"$tmp/hubbench" -bin "$bin" -out "${OUT:-BENCHMARKS.md}" \
	-idle "${IDLE:-5m}" -hubs "${HUBS:-10000}" -udp-hubs "${UDP_HUBS:-100000}" -udp-hub-rate "${UDP_HUB_RATE:-400}" -dur "${DUR:-5s}" \
	-calls "${CALLS:-2000}" -sessions "${SESSIONS:-200}" -profile "$profile_dir" \
	-phases "${PHASES:-all}" -rounds "${ROUNDS:-3}" -peers-idle "${PEERS_IDLE:-2m}" -peers-bin "$BENCH_PEERS" \
	-base-bin "${BASE:-}" -peer-groups "${PEER_GROUPS:-all}"
