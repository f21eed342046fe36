// Command hubtunnel is the agent that runs on the hub.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/version"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const usage = `usage:
  hubtunnel run --config FILE   run the agent
  hubtunnel keygen              print a new private key
  hubtunnel pubkey              read a private key on stdin, print its public key
  hubtunnel dns [NAME] [--config FILE]
                                show how NAME (default: the relay) is resolved:
                                what each resolver answered, what was chosen, why
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
	case "dns":
		err = dnsTrace(os.Args[2:])
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

// dnsTrace resolves a name as the agent would, with the config's [dns]
// settings if one is given, and prints how.
func dnsTrace(args []string) error {
	var name, confPath string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			confPath = args[i+1]
			i++
		case !strings.HasPrefix(a, "-") && name == "":
			name = a
		default:
			return fmt.Errorf("usage: hubtunnel dns [NAME] [--config FILE]")
		}
	}
	var r *dnsfix.Resolver
	var err error
	if confPath != "" {
		cfg, err := agent.LoadConfig(confPath)
		if err != nil {
			return err
		}
		if name == "" {
			name = cfg.Relay
		}
		r, err = cfg.DNSResolver(nil) // warnings show up in the trace's notes
		if err != nil {
			return err
		}
	} else if r, err = dnsfix.New(dnsfix.Config{}); err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("usage: hubtunnel dns [NAME] [--config FILE]")
	}
	if host, _, err := net.SplitHostPort(name); err == nil {
		name = host
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t, err := r.Resolve(ctx, name)
	fmt.Print(t)
	if err != nil {
		return fmt.Errorf("no usable address for %s", t.Name)
	}
	return nil
}
