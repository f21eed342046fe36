// Package addon holds the installable CCU addon (hubtunnel-<version>.tgz):
// update_script, the init script, the control-panel button helper and the
// web files, and the tests that run them under busybox sh and tclsh, the
// shells a CCU has. scripts/addon.sh packs them with the agent binaries.
// There is no Go code here; see README.md for the layout on the hub.
//
// The scripts must never touch a path outside HUBTUNNEL_ROOT (empty on a
// hub) and never stop a process they did not start from the pid file.
package addon
