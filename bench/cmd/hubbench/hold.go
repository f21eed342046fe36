package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/loopback"
)

// hold starts one relay and one agent of a build, the bench's bulk server
// behind the agent, and keeps them until SIGINT or SIGTERM (or -for): a
// rig to point wrk, curl and perf at by hand, and, with a second hold of
// another build beside it, to compare two builds on the same machine in
// the same minutes. It prints, and with -env writes, the processes' PIDs,
// the URLs and the headers, as shell assignments.
func hold(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hubbench hold", flag.ExitOnError)
	binDir := fs.String("bin", "bin", "folder with hubtunnel, hubrelay and ccusim (make build)")
	transport := fs.String("transport", "tcp", "the agent's transport: tcp, tls or udp")
	env := fs.String("env", "", "also write the assignments to this file")
	holdFor := fs.Duration("for", 0, "end after this long (0: at SIGINT or SIGTERM)")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("hold: unexpected %q", fs.Arg(0))
	}
	switch *transport {
	case "tcp", "tls", "udp":
	default:
		return fmt.Errorf("hold: -transport %q, want tcp, tls or udp", *transport)
	}
	bins, err := bench.BinsIn(*binDir)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "hubbench-hold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bulk, err := bench.NewBulkServer()
	if err != nil {
		return err
	}
	defer bulk.Close()
	ports := &loopback.Ports{}
	hub, err := bench.NewHub(dir, "hold", "100.96.0.2")
	if err != nil {
		return err
	}
	relay, err := bench.NewRelay(bins, ports, dir, "relay", *transport == "udp", []bench.Hub{hub})
	if err != nil {
		return err
	}
	if err := relay.Start(); err != nil {
		return err
	}
	defer relay.Proc.Stop()
	agent, err := bench.NewAgent(bins, ports, dir, relay, hub, bench.AgentSpec{Transport: *transport, Targets: map[int]string{80: bulk.Addr()}})
	if err != nil {
		return err
	}
	if err := agent.Start(); err != nil {
		return err
	}
	defer agent.Proc.Stop()
	if _, err := bench.UntilOK(relay.TokenURL(hub.Name, 80, "/small"), agent.Proc.Started, 30*time.Second); err != nil {
		return fmt.Errorf("hold: the hub does not answer through the relay: %w\nagent log:\n%s", err, agent.Proc.Log())
	}

	base := "http://" + relay.Public(80)
	vars := fmt.Sprintf("AGENT=%d\nRELAY=%d\nSMALL=%s/small\nDOWN=%s/down\nUP=%s/up\nHOST='Host: %s.localhost'\nAUTH='Authorization: %s'\n",
		agent.Proc.PID(), relay.Proc.PID(), base, base, base, hub.Name, relay.AuthHeader(hub.Name))
	if *env != "" {
		// Whole or not at all: a script that waits for the file reads it
		// once it is there (TestBenchHold once read it empty).
		if err := atomicfile.WriteFile(*env, []byte(vars), 0o600); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "# hubbench hold: %s over %s, until Ctrl-C\n%s", *binDir, *transport, vars)
	fmt.Fprint(stdout, strings.Join([]string{
		`# wrk -t2 -c50 -d5s -H "$HOST" -H "$AUTH" $SMALL`,
		`# curl -so /dev/null --max-time 5 -H "$HOST" -H "$AUTH" $DOWN`,
		`# perf record -g -p $AGENT -- sleep 5; awk '{print $14+$15}' /proc/$AGENT/stat (CPU ticks)`,
	}, "\n")+"\n")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var end <-chan time.Time
	if *holdFor > 0 {
		end = time.After(*holdFor)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			return nil
		case <-end:
			return nil
		case <-tick.C:
			if !relay.Proc.Alive() || !agent.Proc.Alive() {
				return fmt.Errorf("hold: a process exited\nrelay log:\n%s\nagent log:\n%s", relay.Proc.Log(), agent.Proc.Log())
			}
		}
	}
}
