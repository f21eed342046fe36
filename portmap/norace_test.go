//go:build !race

package portmap

const raceEnabled = false
