# Sourced by deps.sh and bench-deps.sh: apt_install TAG PACKAGE… installs
# Debian packages, waiting for another apt or dpkg (an unattended upgrade,
# a second make) that holds the locks rather than failing: 10 minutes for
# dpkg's lock, and the lists' update tried again for 5 minutes. TAG prefixes
# what it says.
apt_install() {
	local tag=$1
	shift
	echo "$tag: installing $*"
	export DEBIAN_FRONTEND=noninteractive
	local wait_lock=(-o DPkg::Lock::Timeout=600) try
	for try in $(seq 1 30); do
		apt-get "${wait_lock[@]}" update -qq && break
		[ "$try" -lt 30 ] || return 1
		echo "$tag: apt-get update failed (lock held?); trying again in 10 s" >&2
		sleep 10
	done
	apt-get "${wait_lock[@]}" install -y -qq --no-install-recommends "$@" >/dev/null
}
