// Command hubtunnel is the agent that runs on the hub.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/agent"
	"github.com/hubtunnel/hubtunnel/dnsfix"
	"github.com/hubtunnel/hubtunnel/hubinfo"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const usage = `usage:
  hubtunnel run --config FILE [--syslog] [--log-format text|json]
                                run the agent (--syslog: log to the system log)
  hubtunnel enroll CODE [--config FILE]
                                join the relay whose portal made CODE (the
                                running agent then restarts to connect)
  hubtunnel rotate-key [--config FILE]
                                replace this hub's key through the tunnel (the
                                agent also does it by itself once a year)
  hubtunnel status [--config FILE] [--json]
                                show what the running agent says: connected or
                                why not, relay, data, updates (--json: as the API)
  hubtunnel update check   [--config FILE]
                                ask the running agent for the newest release
  hubtunnel update install [--version V] [--allow-downgrade] [--config FILE]
                                install the newest release (or V) and wait
                                until it has the tunnel up or was rolled back
  hubtunnel hub                 show what hub this is and how that was found
  hubtunnel keygen              print a new private key
  hubtunnel pubkey              read a private key on stdin, print its public key
  hubtunnel dns [NAME] [--config FILE]
                                show how NAME (default: the relay) is resolved:
                                what each resolver answered, what was chosen, why
  hubtunnel version             print the version
`

// defaultMemoryLimit keeps the Go heap small on a hub with little RAM
// unless GOMEMLIMIT says otherwise. Under load the heap grows to the limit
// (the GC's goal, twice the live heap, is above it), so the agent's peak
// RSS is about the limit plus the binary's resident pages: at 40 MiB,
// 46-48.2 MB over 1 and 8 downloads and 50 connections' requests (BRIEF.md
// allows 48), at 36 MiB 42.4-43.6 MB, with CPU per GB and the rates the
// same within the rounds' spread. At 32 MiB eight UDP downloads took 40 %
// more CPU per GB: their live heap, ~28 MB, left the GC too little room.
const defaultMemoryLimit = 36 << 20

// defaultMaxProcs is how many threads run the agent's Go code at once
// unless GOMAXPROCS says otherwise. A packet crosses about seven
// goroutines on its way through WireGuard and the netstack; with more than
// one P, each handoff wakes another thread, which spins looking for work
// before it sleeps again. On one P the handoffs are plain goroutine
// switches: with the real binaries on 2 cores (the relay on both), the
// agent's CPU per GB fell 8-24 % and per request 18-31 %; eight streams
// over TCP were 7 % slower (BENCHMARKS.md). A hub's uplink, not a second
// core, usually bounds its traffic, and the hub's own services keep the
// other cores.
const defaultMaxProcs = 1

// runtimeDefaults sets the agent's memory limit and its Ps where the
// environment (GOMEMLIMIT, GOMAXPROCS) does not.
func runtimeDefaults() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(defaultMaxProcs)
	}
}

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
	case "enroll":
		err = enrollHub(os.Args[2:], os.Stdout)
	case "rotate-key":
		err = rotateKey(os.Args[2:], os.Stdout)
	case "status":
		err = status(os.Args[2:])
	case "update":
		err = update(os.Args[2:])
	case "hub":
		h := hubinfo.Detect()
		fmt.Println(h)
		for _, e := range h.Evidence {
			fmt.Println("  " + e)
		}
	case "version":
		fmt.Println(version.Version)
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch {
	case errors.Is(err, localapi.ErrNotRunning):
		fmt.Fprintln(os.Stderr, err) // "hubtunnel is not running (...)"
		os.Exit(1)
	case err != nil:
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

func run(args []string) (err error) {
	const runUsage = "usage: hubtunnel run --config FILE [--syslog] [--log-format text|json]"
	var confPath, format string
	useSyslog := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			confPath = args[i+1]
			i++
		case a == "--syslog":
			useSyslog = true
		case (a == "--log-format" || a == "-log-format") && i+1 < len(args):
			format = args[i+1]
			i++
		default:
			return fmt.Errorf("%s", runUsage)
		}
	}
	if confPath == "" {
		return fmt.Errorf("%s", runUsage)
	}
	runtimeDefaults()
	logf, err := logger.NewLogf(os.Stderr, logger.Options{Format: format})
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	if useSyslog {
		// The CCU's busybox syslogd keeps the log in RAM (/var/log) and
		// stamps each line itself.
		if w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, "hubtunnel"); err == nil {
			logf, _ = logger.NewLogf(w, logger.Options{Format: format, NoTime: true})
		} else {
			logf("warning: no system log (%v); logging to stderr", err)
		}
		// Started in the background, stderr goes nowhere: a config
		// error must reach the system log too, and the init script,
		// which reports it to whoever started the agent (StartErrorFile).
		defer func() {
			if err != nil {
				logf("warning: cannot start: %v", err)
				atomicfile.WriteFile(filepath.Join(filepath.Dir(confPath), agent.StartErrorFile), []byte(err.Error()+"\n"), 0o644)
			}
		}()
	}
	cfg, err := agent.LoadConfig(confPath)
	if err != nil {
		return err
	}
	// An update whose installer died is undone before anything starts; if
	// that puts the other version back, run it instead.
	if bin, err := agent.RecoverUpdate(cfg, version.Version); err != nil {
		logf("update: %v", err)
	} else if bin != "" {
		logf("update: an interrupted update was rolled back; starting the installed version")
		return syscall.Exec(bin, os.Args, os.Environ())
	}
	a := agent.New(cfg, version.Version, logf)
	if err := a.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		return a.Close()
	case r := <-a.RestartRequested():
		a.Close()
		logf("%s", r.Why)
		return syscall.Exec(r.Binary, os.Args, os.Environ()) // same PID: the init script's pid file stays right
	}
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
			name = cfg.RelayHost()
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
