#!/usr/bin/env bash
# make demo: a relay, an agent and a simulated CCU on loopback, as three
# processes, with keys and configs in a temporary folder; the hub joins the
# relay with an enrollment code, as a hub owner's does. Ctrl-C stops all.
#
# Ports: the relay serves the fixed map shifted by OFFSET (default 10000,
# so the WebUI is on 10080); agents dial it on AGENT_PORT; ccusim listens
# on 20000+ its CCU port. Override with OFFSET=… AGENT_PORT=… make demo.
set -euo pipefail
bin=${1:-bin}
bin=$(cd "$bin" && pwd)
OFFSET=${OFFSET:-10000}
AGENT_PORT=${AGENT_PORT:-17443}
SIM=${SIM:-20000}
UI_PORT=${UI_PORT:-18099}

dir=$(mktemp -d /tmp/hubtunnel-demo.XXXXXX)
pids=()
cleanup() {
	rc=${1:-0}
	trap - INT TERM EXIT
	echo
	echo "demo: stopping"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
	exit "$rc"
}
# Ctrl-C is the demo's normal end; a failure keeps its exit status.
trap 'cleanup 0' INT TERM
trap 'cleanup $?' EXIT

umask 077
"$bin/hubtunnel" keygen >"$dir/relay.key"

cat >"$dir/relay.toml" <<TOML
agent_listen = "127.0.0.1:$AGENT_PORT"
agent_listen_udp = "off"
domain = "localhost"
public_listen = "127.0.0.1"
port_offset = $OFFSET
private_key_file = "relay.key"
enroll_address = "127.0.0.1:$AGENT_PORT"
TOML

# The hub's owner, who logs in on the portal; only for this demo's folder.
password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
if ! out=$(echo "$password" | "$bin/hubrelay" user add demo --config "$dir/relay.toml" 2>&1); then
	echo "demo: hubrelay user add: $out" >&2
	exit 1
fi

# The hub's config names no relay: it joins with an enrollment code, as a
# hub owner's does.
cat >"$dir/hub.toml" <<TOML
ui_listen = "127.0.0.1:$UI_PORT"
proxy = "none"

[targets]
host = "127.0.0.1"
[targets.ports]
80 = "$((SIM + 80))"
443 = "$((SIM + 80))"
2000 = "$((SIM + 2000))"
4430 = "$((SIM + 2000))"
2001 = "$((SIM + 2001))"
4431 = "$((SIM + 2001))"
2010 = "$((SIM + 2010))"
4434 = "$((SIM + 2010))"
8181 = "$((SIM + 8181))"
44381 = "$((SIM + 8181))"

# The settings panel checks the CCU session on ccusim's script engine.
[panel]
rega = "http://127.0.0.1:$((SIM + 8181))"
TOML

# Each program's own PID (the subshell's, which exec makes the program's)
# is kept beside the pipeline's, so that the end of the demo stops it.
(cd "$dir" && echo "$BASHPID" >relay.pid && exec "$bin/hubrelay" run --config relay.toml) 2>&1 | sed -u 's/^/relay | /' &
pids+=($!)
"$bin/ccusim" -name demo -webui $((SIM + 80)) -wired $((SIM + 2000)) -rf $((SIM + 2001)) \
	-hmip $((SIM + 2010)) -script $((SIM + 8181)) >"$dir/ccusim.log" 2>&1 &
pids+=($!)
(cd "$dir" && echo "$BASHPID" >agent.pid && exec "$bin/hubtunnel" run --config hub.toml) 2>&1 | sed -u 's/^/agent | /' &
pids+=($!)
for _ in $(seq 50); do
	[ -s "$dir/relay.pid" ] && [ -s "$dir/agent.pid" ] && break
	sleep 0.1
done
relay_pid=$(cat "$dir/relay.pid")
agent_pid=$(cat "$dir/agent.pid")
pids+=("$relay_pid" "$agent_pid")

# fail stops the demo with a reason instead of printing URLs that lead
# nowhere.
fail() {
	echo "demo: $*" >&2
	exit 1
}
# alive fails the demo if the relay or the agent has exited.
alive() {
	kill -0 "$relay_pid" 2>/dev/null || fail "the relay did not start (see its lines above; is port $AGENT_PORT or $((443 + OFFSET)) taken? OFFSET=… AGENT_PORT=… make demo)"
	kill -0 "$agent_pid" 2>/dev/null || fail "the agent did not start (see its lines above; is port $UI_PORT taken? UI_PORT=… make demo)"
}

# Wait for the relay's agent port and the agent's status API (at most 15 s).
up=
for _ in $(seq 150); do
	alive
	if "$bin/hubtunnel" status --config "$dir/hub.toml" >/dev/null 2>&1 &&
		(exec 3<>"/dev/tcp/127.0.0.1/$AGENT_PORT") 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[ -n "$up" ] || fail "the relay or the agent did not come up within 15 s"
sleep 0.3 # a relay that could not open a later listener exits a moment after the first
alive

# The owner adds the hub (the portal's "Add a hub" does the same), and the
# hub enrolls with the code.
code=$("$bin/hubrelay" hub add demo --owner demo --config "$dir/relay.toml" | sed -n 's/^    \([^ ]*\)$/\1/p' | head -n 1)
[ -n "$code" ] || fail "hubrelay hub add printed no enrollment code"
echo "demo: enrollment code $code"
"$bin/hubtunnel" enroll "$code" --config "$dir/hub.toml" | sed -u 's/^/enroll | /' || { alive; fail "the hub did not enroll"; }

token=$("$bin/hubrelay" token add demo --ports all --label "make demo" --config "$dir/relay.toml" 2>/dev/null |
	grep -o 'htk_[A-Za-z0-9_-]\{43\}' | head -n 1)
[ -n "$token" ] || fail "could not make an app token (hubrelay token add)"

# A CCU session, as the WebUI's login makes one (ccusim's login hook): the
# hub owner's settings panel opens with it, as from the control panel.
sid=$(exec 3<>"/dev/tcp/127.0.0.1/$((SIM + 80))" &&
	printf 'POST /login.htm HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n' >&3 &&
	sed -n '$p' <&3 | tr -d '\r') 2>/dev/null || sid=''
panel="(no CCU session: ccusim's login did not answer)"
[ -z "$sid" ] || panel="http://127.0.0.1:$UI_PORT/addons/hubtunnel/panel/?sid=$sid"

cat <<MSG

  hubtunnel demo is running (files in $dir)

  Log in (the certificate is self-signed: accept the warning):
    portal:                      https://localhost:$((443 + OFFSET))/   user demo, password $password
    the hub's WebUI:             https://demo.localhost:$((443 + OFFSET))/  (asks for the login first)
  XML-RPC with the app token $token:
    python3 -c 'import ssl, xmlrpc.client as x; print(x.ServerProxy("https://hubtunnel:$token@localhost:$((4431 + OFFSET))/", context=ssl._create_unverified_context()).listDevices())'
    curl -k -u hubtunnel:$token -H 'Content-Type: text/xml' --data '<?xml version="1.0"?><methodCall><methodName>listDevices</methodName></methodCall>' https://localhost:$((4431 + OFFSET))/
  the hub owner's settings panel: $panel
  agent status:                  http://127.0.0.1:$UI_PORT/api/status   ($bin/hubtunnel status --config $dir/hub.toml)
  audit log:                     $bin/hubrelay audit --config $dir/relay.toml
  (the plaintext XML-RPC and script ports are off: plaintext_ports = true in relay.toml serves them)

  Ctrl-C stops relay, agent and ccusim.
MSG
wait
