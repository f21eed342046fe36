// Command hubrelay is the relay that agents dial and users reach hubs through.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/version"
)

const usage = `usage:
  hubrelay run --config FILE [--log-format text|json]
                               run the relay (SIGHUP reloads its
                               certificate and config)
  hubrelay user add|passwd|remove NAME
  hubrelay user list           manage the relay's accounts
  hubrelay grant USER HUB [--ports webui,xmlrpc,script|all] [--until TIME]
  hubrelay revoke USER HUB
  hubrelay grants [--hub HUB] [--user USER]
                               give and take access to a hub
  hubrelay token add HUB [--ports P] [--label TEXT] [--expires TIME] [--user USER]
  hubrelay token list [--hub HUB]
  hubrelay token revoke ID     app tokens (for XML-RPC clients)
  hubrelay session list [--user USER]
  hubrelay session revoke ID | --user USER --all
                               login sessions
  hubrelay audit [--hub HUB] [--user USER] [--since TIME] [--kind KIND] [--limit N] [--json]
                               print the audit log
  hubrelay hub list
  hubrelay hub owner HUB USER|--none
  hubrelay hub disable|enable HUB
                               the hubs, their owners
  hubrelay hub add HUB [--owner USER] [--ttl 24h]
  hubrelay hub codes
  hubrelay hub withdraw HUB    one-time enrollment codes for new hubs
  hubrelay key show|rotate|promote
                               the relay's own key, replaced without
                               stranding a hub
  hubrelay backup FILE         the store and the key files, while it runs
  hubrelay restore FILE        put a backup in place (relay stopped)
  hubrelay version             print the version
Every command but run and version takes --config FILE (default relay.toml)
and works while the relay runs: it picks changes up at once. TIME is
"2026-12-01 18:00" (local time), RFC 3339, or a duration (4h, 2d).
hubrelay COMMAND --help explains COMMAND.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if u, ok := usages[os.Args[1]]; ok && wantsHelp(os.Args[2:]) {
		fmt.Println(u)
		return
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2:])
	case "version":
		fmt.Println(version.Version)
	default:
		cmd, ok := commands[os.Args[1]]
		if !ok {
			fmt.Fprint(os.Stderr, usage)
			os.Exit(2)
		}
		err = cmd(osCLI(), os.Args[2:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubrelay:", err)
		os.Exit(1)
	}
}

// logBatchInterval is how long the relay's request lines may wait to be
// written with others.
const logBatchInterval = 100 * time.Millisecond

// relayProcs is how many Ps run the relay's Go code unless GOMAXPROCS is
// set: one fewer than the runtime's default n (the machine's cores, or a
// container's CPU limit), at least one. A packet or a small request crosses
// about eight goroutines in the relay (WireGuard's routines, the
// netstack's, the proxy's); with a P idle, each handoff wakes a sleeping
// thread that spins and sleeps again, and the core left over serves the
// kernel's network work, which the relay's traffic needs as much. On the
// 2-core bench host, one P against two, alternated with the same build:
// relay CPU per GB -22 % (one TCP download) and -22 to -30 % (UDP),
// eight UDP streams 33 % faster, 50 connections' small requests 15-20 %
// more a second at 25 % less relay CPU each (BENCHMARKS.md). Hosts with
// more cores were not measured. Set at the start, the count no longer
// follows a container's CPU limit changed while the relay runs (as the
// runtime's own default would); a restart picks the new one up.
func relayProcs(n int) int { return max(1, n-1) }

func run(args []string) error {
	const runUsage = "usage: hubrelay run --config FILE [--log-format text|json]"
	var confPath, format string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			confPath = args[i+1]
			i++
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
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(relayProcs(runtime.GOMAXPROCS(0)))
	}
	// Request lines wait up to a tenth of a second in the batch; every
	// other line goes out at once (logger.Batch).
	out := logger.NewBatch(os.Stderr, logBatchInterval)
	defer out.Flush()
	log, err := logger.New(out, logger.Options{Format: format})
	if err != nil {
		return fmt.Errorf("--log-format: %w", err)
	}
	// Libraries that log through slog's default (lego, for ACME) write
	// the same lines.
	slog.SetDefault(log)
	cfg, err := relay.LoadConfig(confPath)
	if err != nil {
		return err
	}
	cfg.Logger = log
	s, err := relay.New(*cfg, version.Version, nil)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for range 1 << 30 { // a SIGHUP a second for 34 years
		if <-sig != syscall.SIGHUP {
			break
		}
		log.Info("SIGHUP: reloading the config and the certificate")
		if err := s.Reload(); err != nil {
			log.Warn("reload failed", logger.Err, err)
		}
	}
	return s.Close()
}
