//go:build race

package udpbind

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// allocation checks of pooled paths skip under it.
const raceEnabled = true
