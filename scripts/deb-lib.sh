# deb-lib.sh: what scripts/deb-agent.sh and scripts/deb-relay.sh share
# (sourced, not run).

# deb_version VERSION prints VERSION as Debian orders it: 1.0~x sorts
# before 1.0, so a development build (0.3.0-dev.g1a2b3c4) becomes
# 0.3.0~dev.g1a2b3c4, older than the release 0.3.0. A version that does not
# start with a digit is refused.
deb_version() {
	local v=${1//-/\~}
	case "$v" in
	[0-9]*) echo "$v" ;;
	*) echo "deb: version $1 does not start with a digit" >&2; return 2 ;;
	esac
}
