//go:build race

package portmap

const raceEnabled = true
