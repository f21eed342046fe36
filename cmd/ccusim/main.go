// Command ccusim runs a stand-in for a HomeMatic CCU's services (WebUI,
// XML-RPC, script engine) until SIGINT or SIGTERM. For each service it
// prints one line to stdout, "ccusim: <service> listening on <host:port>",
// so that a script can find ports chosen with 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/hubtunnel/hubtunnel/ccusim"
)

func main() {
	cfg := ccusim.DefaultConfig()
	flag.StringVar(&cfg.Name, "name", cfg.Name, "hub name shown on the WebUI page")
	flag.StringVar(&cfg.Host, "host", cfg.Host, "address to listen on")
	flag.IntVar(&cfg.WebUIPort, "webui", cfg.WebUIPort, "WebUI port (0 = any free port, -1 = off)")
	flag.IntVar(&cfg.WiredPort, "wired", cfg.WiredPort, "BidCos-Wired XML-RPC port (0 = any free port, -1 = off)")
	flag.IntVar(&cfg.RFPort, "rf", cfg.RFPort, "BidCos-RF XML-RPC port (0 = any free port, -1 = off)")
	flag.IntVar(&cfg.HmIPPort, "hmip", cfg.HmIPPort, "HmIP-RF XML-RPC port (0 = any free port, -1 = off)")
	flag.IntVar(&cfg.ScriptPort, "script", cfg.ScriptPort, "script engine port (0 = any free port, -1 = off)")
	flag.StringVar(&cfg.FilesDir, "files", "", "directory served under /files/ on the WebUI port (empty = none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ccusim: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}
	cfg.Logf = log.New(os.Stderr, "", log.LstdFlags).Printf

	sim := ccusim.New(cfg)
	if err := sim.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, name := range ccusim.Services() {
		if addr := sim.Addr(name); addr != "" {
			fmt.Printf("ccusim: %s listening on %s\n", name, addr)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	<-ctx.Done()
	stop()
	sim.Close()
}
