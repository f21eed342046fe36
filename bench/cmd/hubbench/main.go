// Command hubbench measures hubtunnel against the budgets of BRIEF.md and
// writes BENCHMARKS.md; `make bench` runs it (see scripts/bench.sh). It
// also has two helpers it runs as separate processes of its own:
//
//	hubbench [flags]                       the whole run
//	hubbench fwd -listen ADDR -to ADDR     one hop of the plain two-hop TCP relay
//	hubbench fleet -relay ADDR -relay-key KEY -keys FILE
//	                                       many hubs in one process, until SIGTERM
//	hubbench lightfleet -relay ADDR -relay-key KEY -keys FILE -first IP
//	                                       many idle UDP hubs in one process, until SIGTERM
//
// and one for people:
//
//	hubbench hold [-bin DIR] [-transport tcp|tls|udp] [-env FILE] [-for DUR]
//	                                       a relay and an agent held for wrk, curl and perf
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/bench"
	"github.com/hubtunnel/hubtunnel/vpn"
)

func main() {
	log.SetFlags(0)
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "fwd":
		err = fwd(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "fleet":
		err = fleet(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "lightfleet":
		err = lightFleet(os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "hold":
		err = hold(os.Args[2:], os.Stdout)
	default:
		err = runAll(os.Args[1:])
	}
	if err != nil {
		log.Fatal("hubbench: ", err)
	}
}

// pick reads a flag's comma-separated choice among names: nil for "all".
func pick(flag, value string, names []string) ([]string, error) {
	if value == "all" {
		return nil, nil
	}
	var out []string
	for _, v := range strings.Split(value, ",") {
		if !slices.Contains(names, v) {
			return nil, fmt.Errorf("%s: no %q; the choices are all or %s", flag, v, strings.Join(names, ","))
		}
		out = append(out, v)
	}
	return out, nil
}

func runAll(args []string) error {
	fs := flag.NewFlagSet("hubbench", flag.ExitOnError)
	binDir := fs.String("bin", "bin", "folder with hubtunnel, hubrelay and ccusim (make build)")
	out := fs.String("out", "BENCHMARKS.md", "where to write the report")
	dur := fs.Duration("dur", 5*time.Second, "each throughput measurement")
	warm := fs.Duration("warmup", time.Second, "warm-up before each throughput measurement")
	calls := fs.Int("calls", 2000, "XML-RPC calls timed per path")
	sessions := fs.Int("sessions", 200, "concurrent sessions through one hub")
	held := fs.Int("held", 1500, "sessions held open for the agent's memory, 0–2000 (0 skips)")
	hubs := fs.Int("hubs", 10000, "connected TCP hubs for the relay memory phase, 0–100000 and within the file descriptor limit (0 skips)")
	udpHubs := fs.Int("udp-hubs", 100000, "idle UDP hubs on one relay for the udphubs phase, 0–200000 (0 skips)")
	udpHubRate := fs.Int("udp-hub-rate", 400, "UDP hubs started a second in the udphubs phase, 10–5000")
	idle := fs.Duration("idle", 5*time.Minute, "idle window of the wire-bytes phase (0 skips rekey and idle)")
	profile := fs.String("profile", filepath.Join(os.TempDir(), "hubtunnel-bench-profile"), "folder for pprof profiles (\"\" skips profiling)")
	keep := fs.Bool("keep", false, "keep the work folder (configs, logs, captures)")
	phases := fs.String("phases", "all", "phases to run, comma-separated: all or "+strings.Join(bench.PhaseNames, ","))
	rounds := fs.Int("rounds", 3, "rounds of the peers phase (0 skips it)")
	peerIdle := fs.Duration("peers-idle", 2*time.Minute, "idle window of the peers phase (0 skips it)")
	peerBins := fs.String("peers-bin", "", "folder with frps, frpc and chisel (scripts/bench-deps.sh builds them)")
	baseBin := fs.String("base-bin", "", "folder with another build's hubtunnel, hubrelay and ccusim, measured beside -bin in the peers phase (\"\" for none)")
	peerGroups := fs.String("peer-groups", "all", "the peers phase's peers, comma-separated: all or "+strings.Join(bench.PeerGroupNames, ","))
	fs.Parse(args)
	phaseList, err := pick("-phases", *phases, bench.PhaseNames)
	if err != nil {
		return err
	}
	groups, err := pick("-peer-groups", *peerGroups, bench.PeerGroupNames)
	if err != nil {
		return err
	}
	if slices.Contains(groups, "base") && *baseBin == "" {
		return fmt.Errorf("-peer-groups: base is another build: give its folder with -base-bin")
	}
	switch {
	case *hubs < 0 || *hubs > 100000:
		return fmt.Errorf("-hubs %d: want 0–100000", *hubs)
	case *udpHubs < 0 || *udpHubs > 200000:
		return fmt.Errorf("-udp-hubs %d: want 0–200000", *udpHubs)
	case *udpHubRate < 10 || *udpHubRate > 5000:
		return fmt.Errorf("-udp-hub-rate %d: want 10–5000", *udpHubRate)
	case *hubs > maxTCPHubs():
		return fmt.Errorf("-hubs %d: the relay holds a file descriptor per TCP hub and so does the fleet, and this machine allows %d per process (ulimit -n): at most %d", *hubs, fdLimit(), maxTCPHubs())
	case *idle < 0 || *idle > 2*time.Hour:
		return fmt.Errorf("-idle %v: want 0–2h", *idle)
	case *dur < time.Second || *dur > 5*time.Minute:
		return fmt.Errorf("-dur %v: want 1s–5m", *dur)
	case *warm < 0 || *warm > time.Minute:
		return fmt.Errorf("-warmup %v: want 0–1m", *warm)
	case *calls < 10 || *calls > 100000:
		return fmt.Errorf("-calls %d: want 10–100000", *calls)
	case *sessions < 1 || *sessions > 2000:
		return fmt.Errorf("-sessions %d: want 1–2000", *sessions)
	case *held < 0 || *held > 2000:
		return fmt.Errorf("-held %d: want 0–2000", *held)
	case *rounds < 0 || *rounds > 20:
		return fmt.Errorf("-rounds %d: want 0–20", *rounds)
	case *peerIdle < 0 || *peerIdle > time.Hour:
		return fmt.Errorf("-peers-idle %v: want 0–1h", *peerIdle)
	}
	bins, err := bench.BinsIn(*binDir)
	if err != nil {
		return err
	}
	var baseBins *bench.Bins
	if *baseBin != "" {
		b, err := bench.BinsIn(*baseBin)
		if err != nil {
			return err
		}
		baseBins = &b
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "hubtunnel-bench-")
	if err != nil {
		return err
	}
	if *keep {
		log.Printf("hubbench: work folder %s (kept)", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	rep, err := bench.Run(bench.Options{
		Bins: bins, Root: root, Dir: dir, Self: self,
		Duration: *dur, Warmup: *warm, Calls: *calls, Sessions: *sessions, Held: *held,
		Hubs: *hubs, UDPHubs: *udpHubs, UDPHubRate: *udpHubRate, FleetProcHubs: maxTCPHubs(), Idle: *idle, Profile: *profile,
		Phases: phaseList, Rounds: *rounds, PeerIdle: *peerIdle, PeerBins: *peerBins,
		BaseBins: baseBins, PeerGroups: groups,
		Logf: log.Printf,
	})
	if err != nil {
		return err
	}
	fmt.Println()
	rep.Print(os.Stdout)
	old, err := os.ReadFile(*out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(*out, []byte(rep.Markdown()+handKept(string(old))), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nhubbench: wrote %s; took %s\n", *out, rep.Took.Round(time.Second))
	if *profile != "" {
		fmt.Printf("hubbench: profiles in %s\n", *profile)
	}
	return nil
}

func fwd(args []string) error {
	fs := flag.NewFlagSet("hubbench fwd", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to accept on")
	to := fs.String("to", "", "address to connect each connection to")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	log.Printf("fwd: listening on %s, forwarding to %s", ln.Addr(), *to)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		ln.Close()
	}()
	return bench.Forward(ln, *to)
}

func fleet(args []string) error {
	fs := flag.NewFlagSet("hubbench fleet", flag.ExitOnError)
	relay := fs.String("relay", "", "the relay's agent address, host:port")
	relayKey := fs.String("relay-key", "", "the relay's public key (base64)")
	keys := fs.String("keys", "", "file with one private key (base64) per hub")
	fs.Parse(args)
	rk, ks, err := fleetKeys(*relayKey, *keys, "a TCP connection")
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	f, err := bench.StartFleet(bench.FleetConfig{Relay: *relay, RelayKey: rk, Keys: ks, Logf: log.Printf})
	if err != nil {
		return err
	}
	<-sig
	f.Close()
	return nil
}

func lightFleet(args []string) error {
	fs := flag.NewFlagSet("hubbench lightfleet", flag.ExitOnError)
	relay := fs.String("relay", "", "the relay's UDP address, host:port")
	relayKey := fs.String("relay-key", "", "the relay's public key (base64)")
	keys := fs.String("keys", "", "file with one private key (base64) per hub")
	first := fs.String("first", "127.1.0.1", "the address the first hub's socket binds to; each next hub's is the next address")
	rate := fs.Int("rate", 500, "hubs started a second")
	fs.Parse(args)
	rk, ks, err := fleetKeys(*relayKey, *keys, "a UDP socket")
	if err != nil {
		return err
	}
	ra, err := netip.ParseAddrPort(*relay)
	if err != nil {
		return fmt.Errorf("-relay: %w", err)
	}
	fa, err := netip.ParseAddr(*first)
	if err != nil {
		return fmt.Errorf("-first: %w", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	mark := make(chan os.Signal, 1) // SIGUSR1: LightFleet.Mark, for a relay restart
	signal.Notify(mark, syscall.SIGUSR1)
	f, err := bench.StartLightFleet(bench.LightFleetConfig{Relay: ra, RelayKey: rk, First: fa, Keys: ks, Rate: *rate, Logf: log.Printf})
	if err != nil {
		return err
	}
	defer f.Close()
	report := func() {
		c := f.Counts()
		log.Printf("light fleet: counts ready=%d handshakes=%d keepalives=%d retries=%d cookies=%d unknowns=%d from_relay=%d pings=%d pongs=%d since_mark=%d",
			f.Ready(), c.Handshakes, c.Keepalives, c.Retries, c.Cookies, c.Unknowns, c.FromRelay, c.Pings, c.Pongs, f.SinceMark())
	}
	ready := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-sig:
			report()
			return nil
		case <-mark:
			f.Mark()
			log.Printf("light fleet: marked")
			continue
		case <-tick.C:
		}
		if !ready && f.Ready() == f.Len() {
			ready = true
			log.Printf("light fleet: %d hubs ready", f.Len())
		}
		report()
	}
}

// fleetKeys reads a fleet's -relay-key and -keys file: one hub per key,
// each holding one descriptor (each), within this process's limit.
func fleetKeys(relayKey, keysFile, each string) (vpn.PublicKey, []vpn.PrivateKey, error) {
	rk, err := vpn.ParsePublicKey(relayKey)
	if err != nil {
		return rk, nil, fmt.Errorf("-relay-key: %w", err)
	}
	ks, err := bench.ReadKeys(keysFile)
	if err != nil {
		return rk, nil, err
	}
	if len(ks) == 0 || len(ks) > maxTCPHubs() {
		return rk, nil, fmt.Errorf("-keys: %d keys, want 1–%d (%s each, within ulimit -n %d)", len(ks), maxTCPHubs(), each, fdLimit())
	}
	return rk, ks, nil
}

// fdLimit is the soft limit on open files of this process, which the relay
// and the fleet it starts inherit.
func fdLimit() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 1 << 30
	}
	return int(r.Cur)
}

// maxTCPHubs is how many TCP hubs fit in the file descriptor limit, with
// room for each process's own files (listeners, the store, logs).
func maxTCPHubs() int { return max(fdLimit()-fdReserve, 0) }

// fdReserve is what the relay and the fleet keep of their file descriptors
// for themselves.
const fdReserve = 500

// handKeptHeading starts the part of BENCHMARKS.md that people write: the
// figures of partial runs and the comparisons between full ones.
const handKeptHeading = "## Earlier partial runs (kept by hand"

// handKept returns the hand-kept part of an earlier report, from its
// heading to the end, with a blank line before it; "" if it has none. A
// run replaces everything above it and keeps it.
func handKept(old string) string {
	i := strings.Index(old, "\n"+handKeptHeading)
	if i < 0 {
		return ""
	}
	return "\n" + old[i+1:]
}
