// Command brokenagent stands in for a release with a fatal bug: it answers
// "version" as an agent does, so it passes every check made before
// installing, and fails a few seconds after it is run: late enough that the
// init script counts it started (it waits 2 s), so the installer must find
// out from the missing tunnel. (One that ends at once makes the restart
// itself fail, which the addon's own tests cover.)
package main

import (
	"fmt"
	"os"
	"time"
)

var version = "0.0.0" // set with -ldflags -X main.version=...

func main() {
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(version)
		return
	}
	time.Sleep(3 * time.Second)
	fmt.Fprintln(os.Stderr, "brokenagent: fatal error at start (a stand-in for a bad release)")
	os.Exit(1)
}
