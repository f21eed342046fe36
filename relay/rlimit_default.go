//go:build !unix

package relay

// fdLimit is unknown here: the connection limits take their largest
// defaults.
func fdLimit() uint64 { return 0 }
