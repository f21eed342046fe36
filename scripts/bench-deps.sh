#!/usr/bin/env bash
# Installs what `make bench` needs beyond `make test`'s deps when it is
# missing: tshark (counts the agent connection's bytes on the wire).
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have tshark || need+=(tshark)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench-deps: missing ${need[*]}; run as root or install them (apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "bench-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
go mod download
