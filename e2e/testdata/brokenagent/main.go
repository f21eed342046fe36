// Command brokenagent stands in for a release with a fatal bug: it answers
// "version" as an agent does, so it passes every check made before
// installing, and fails as soon as it is run.
package main

import (
	"fmt"
	"os"
)

var version = "0.0.0" // set with -ldflags -X main.version=...

func main() {
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(version)
		return
	}
	fmt.Fprintln(os.Stderr, "brokenagent: fatal error at start (a stand-in for a bad release)")
	os.Exit(1)
}
