// Command hubtunnel is the agent that runs on the hub.
package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/version"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const usage = `usage:
  hubtunnel run --config FILE   run the agent
  hubtunnel keygen              print a new private key
  hubtunnel pubkey              read a private key on stdin, print its public key
  hubtunnel version             print the version
`

// defaultMemoryLimit keeps the Go heap small on a hub with little RAM
// unless GOMEMLIMIT says otherwise.
const defaultMemoryLimit = 40 << 20

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "keygen":
		var k vpn.PrivateKey
		if k, err = vpn.GeneratePrivateKey(); err == nil {
			fmt.Println(k.Base64())
		}
	case "pubkey":
		err = pubkey(os.Stdin)
	case "version":
		fmt.Println(version.Version)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubtunnel:", err)
		os.Exit(1)
	}
}

func pubkey(r io.Reader) error {
	line, err := bufio.NewReader(io.LimitReader(r, 1024)).ReadString('\n')
	if err != nil && err != io.EOF {
		return err
	}
	k, err := vpn.ParsePrivateKey(line)
	if err != nil {
		return err
	}
	fmt.Println(k.Public())
	return nil
}

func run(args []string) error {
	if len(args) != 2 || (args[0] != "--config" && args[0] != "-config") {
		return fmt.Errorf("usage: hubtunnel run --config FILE")
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	cfg, err := agent.LoadConfig(args[1])
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "", log.LstdFlags)
	a := agent.New(cfg, version.Version, logger.Printf)
	if err := a.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return a.Close()
}
