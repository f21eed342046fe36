// Package hubinfo knows the hub the agent runs on: its kind, firmware
// version, board, OS and CPU architecture (the key of a release artifact).
//
// Detect (DetectAt, for a root other than /) reads a few marker files that the hub systems
// really ship, in a fixed order; the first that matches decides the Kind:
//
//  1. /VERSION, or /boot/VERSION where there is no /VERSION, as KEY=VALUE
//     lines. PRODUCT=debmatic is debmatic (its package installs that file);
//     PRODUCT=raspmatic_<platform> is RaspberryMatic.
//  2. The directory /etc/piVCCU3 (or /etc/piVCCU of the older CCU2-based
//     piVCCU) is piVCCU. Its package puts one into the container and one
//     onto the host, so both sides say pivccu. This comes before the CCU3
//     check because the container's /VERSION is the CCU3 firmware's own.
//  3. PRODUCT=ccu3 is eQ-3's CCU3 firmware.
//  4. Any other PRODUCT next to a PLATFORM is RaspberryMatic too: OpenCCU,
//     its successor, writes PRODUCT=<platform> (rpi4, ova, oci_amd64).
//  5. VERSION=2.x without a PRODUCT is a CCU2: its firmware writes only
//     VERSION= to /boot/VERSION.
//  6. Anything else is generic Linux.
//
// The firmware version is the VERSION= of that file (on a piVCCU host, of
// the container's /var/lib/piVCCU3/rootfs/VERSION). The board is the
// hardware's own name: /proc/device-tree/model (NUL-terminated), else the
// Model or Hardware line of /proc/cpuinfo, else the DMI vendor and product
// in /sys. RaspberryMatic's virtual platforms say what they are instead
// ("ova", "lxc", "docker"), since the hardware files there describe the
// host; a CCU3 or RaspberryMatic that names no hardware falls back to its
// PLATFORM. OS is PRETTY_NAME from /etc/os-release or /usr/lib/os-release.
//
// Detection never fails and never writes: a missing, unreadable, binary or
// huge file is as if it were absent. It reads at most 64 KiB of any file and
// keeps only printable ASCII of what it reports, so a file's contents cannot
// reach a log line, a panel or the agent's hello as control characters.
package hubinfo
