#!/usr/bin/env bash
# make demo: a relay, an agent and a simulated CCU on loopback, as three
# processes, with keys and configs in a temporary folder. Ctrl-C stops all.
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
	trap - INT TERM EXIT
	echo
	echo "demo: stopping"
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
	exit 0
}
trap cleanup INT TERM EXIT

umask 077
"$bin/hubtunnel" keygen >"$dir/relay.key"
"$bin/hubtunnel" keygen >"$dir/hub.key"
relay_pub=$("$bin/hubtunnel" pubkey <"$dir/relay.key")
hub_pub=$("$bin/hubtunnel" pubkey <"$dir/hub.key")

cat >"$dir/relay.toml" <<TOML
agent_listen = "127.0.0.1:$AGENT_PORT"
agent_listen_udp = "off"
domain = "localhost"
public_listen = "127.0.0.1"
port_offset = $OFFSET
private_key_file = "relay.key"

[[hub]]
name = "demo"
public_key = "$hub_pub"
tunnel_ip = "100.96.0.2"
owner = "demo"
TOML

# The hub's owner, who logs in on the portal, and an app token of theirs
# for the XML-RPC lines below; both only for this demo's folder.
password=$(head -c 12 /dev/urandom | base64 | tr -d '/+=')
if ! out=$(echo "$password" | "$bin/hubrelay" user add demo --config "$dir/relay.toml" 2>&1); then
	echo "demo: hubrelay user add: $out" >&2
	exit 1
fi
token=$("$bin/hubrelay" token add demo --ports all --label "make demo" --config "$dir/relay.toml" 2>/dev/null |
	grep -o 'htk_[A-Za-z0-9_-]\{43\}' | head -n 1)
if [ -z "$token" ]; then
	echo "demo: could not make an app token (hubrelay token add)" >&2
	exit 1
fi

cat >"$dir/hub.toml" <<TOML
name = "demo"
relay = "127.0.0.1:$AGENT_PORT"
relay_public_key = "$relay_pub"
private_key_file = "hub.key"
tunnel_ip = "100.96.0.2"
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
TOML

(cd "$dir" && exec "$bin/hubrelay" run --config relay.toml) 2>&1 | sed -u 's/^/relay | /' &
pids+=($!)
"$bin/ccusim" -name demo -webui $((SIM + 80)) -wired $((SIM + 2000)) -rf $((SIM + 2001)) \
	-hmip $((SIM + 2010)) -script $((SIM + 8181)) >"$dir/ccusim.log" 2>&1 &
pids+=($!)
(cd "$dir" && exec "$bin/hubtunnel" run --config hub.toml) 2>&1 | sed -u 's/^/agent | /' &
pids+=($!)

# Wait until the agent reports the tunnel up (at most 15 s).
for _ in $(seq 150); do
	if "$bin/hubtunnel" status --config "$dir/hub.toml" --json 2>/dev/null | grep -q '"state": "connected"'; then
		break
	fi
	sleep 0.1
done

cat <<MSG

  hubtunnel demo is running (files in $dir)

  Log in (the certificate is self-signed: accept the warning):
    portal:                      https://localhost:$((443 + OFFSET))/   user demo, password $password
    the hub's WebUI:             https://demo.localhost:$((443 + OFFSET))/  (asks for the login first)
  XML-RPC with the app token $token:
    python3 -c 'import ssl, xmlrpc.client as x; print(x.ServerProxy("https://hubtunnel:$token@localhost:$((4431 + OFFSET))/", context=ssl._create_unverified_context()).listDevices())'
    curl -k -u hubtunnel:$token -H 'Content-Type: text/xml' --data '<?xml version="1.0"?><methodCall><methodName>listDevices</methodName></methodCall>' https://localhost:$((4431 + OFFSET))/
  agent status:                  http://127.0.0.1:$UI_PORT/api/status   ($bin/hubtunnel status --config $dir/hub.toml)
  audit log:                     $bin/hubrelay audit --config $dir/relay.toml
  (the plaintext XML-RPC and script ports are off: plaintext_ports = true in relay.toml serves them)

  Ctrl-C stops relay, agent and ccusim.
MSG
wait
