// Command hubrelay is the relay that agents dial and users reach hubs through.
package main

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/version"
)

const usage = `usage:
  hubrelay run --config FILE   run the relay
  hubrelay user add|passwd|remove NAME [--config FILE]
  hubrelay user list [--config FILE]
                               manage the relay's accounts
  hubrelay version             print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "user":
		err = osCLI().user(os.Args[2:])
	case "version":
		fmt.Println(version.Version)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubrelay:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 || (args[0] != "--config" && args[0] != "-config") {
		return fmt.Errorf("usage: hubrelay run --config FILE")
	}
	cfg, err := relay.LoadConfig(args[1])
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	s, err := relay.New(*cfg, version.Version, logger.Printf)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return s.Close()
}
