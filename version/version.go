// Package version is the build's version, set by the Makefile with
// -ldflags "-X github.com/hubtunnel/hubtunnel/version.Version=...".
// The CCU shows it in its addon list: lower case, one word.
package version

// Version is "dev" in builds that were not stamped.
var Version = "dev"
