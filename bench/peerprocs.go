package bench

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"
)

// A peer is one way from the bench's clients to its bulk server that the
// peers phase compares: no hop at all, the plain two-hop relay, hubtunnel
// over each transport, and the tools a hub owner could pick instead. Each
// tunnel has a hub side (the "agent": frpc, chisel client, ssh) and a
// public side (the "relay": frps, chisel server, sshd), each its own
// process on loopback.
type peer struct {
	name       string
	addr       string // where clients connect, host:port
	host, auth string // Host and Authorization of every request; "" for none
	agent      *Proc  // nil for direct
	relay      *Proc  // nil for direct
	relayTree  bool   // the relay's CPU includes its descendants (sshd's per-connection processes)
	idle       string // capture filter of the agent's connection to the relay; "" for none
	version    string
	err        error // why it is not (or no longer) measured
}

// cpu reads the agent's and the relay's CPU time so far (0 where the peer
// has none).
func (p *peer) cpu() (agent, relay time.Duration, err error) {
	if p.agent != nil {
		if agent, err = CPUTime(p.agent.PID()); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", p.agent.Name, err)
		}
	}
	if p.relay != nil {
		read := CPUTime
		if p.relayTree {
			read = TreeCPU
		}
		if relay, err = read(p.relay.PID()); err != nil {
			return 0, 0, fmt.Errorf("%s: %w", p.relay.Name, err)
		}
	}
	return agent, relay, nil
}

// peerSet starts the peers and stops them all at the end.
type peerSet struct {
	ru    *run
	dir   string
	stops []func()
}

func (s *peerSet) started(p *Proc) *Proc {
	s.stops = append(s.stops, p.Stop)
	return p
}

func (s *peerSet) stopAll() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// start runs argv as name and waits for its log to say ready ("" waits for
// nothing).
func (s *peerSet) start(name string, env []string, ready string, argv ...string) (*Proc, error) {
	p, err := StartProc(s.dir, name, env, argv...)
	if err != nil {
		return nil, err
	}
	s.started(p)
	if ready != "" {
		if err := p.WaitLog(ready, 30*time.Second); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// through waits until /ping answers at addr (the backend through the peer).
func through(addr string) error {
	_, err := UntilOK("http://"+addr+"/ping", time.Now(), 30*time.Second)
	return err
}

func (s *peerSet) free() (int, error) { return s.ru.ports.Free() }

func (s *peerSet) direct() ([]*peer, error) {
	return []*peer{{name: "direct", addr: s.ru.bulk.Addr()}}, nil
}

func (s *peerSet) twoHop() ([]*peer, error) {
	b, err := s.ru.forwarder("peers-fwd-b", s.ru.bulk.Addr())
	if err != nil {
		return nil, err
	}
	s.started(b.proc)
	a, err := s.ru.forwarder("peers-fwd-a", b.addr)
	if err != nil {
		return nil, err
	}
	s.started(a.proc)
	return []*peer{{name: "plain two-hop (no crypto)", addr: a.addr, agent: b.proc, relay: a.proc}}, nil
}

// hubtunnel is one relay of bins with two hubs, one agent on each
// transport; suffix tells the names of another build's apart ("" or
// " (base)").
func (s *peerSet) hubtunnel(bins Bins, suffix string) ([]*peer, error) {
	tag := ""
	if suffix != "" {
		tag = "b"
	}
	tcp, err := NewHub(s.dir, "ptcp"+tag, "100.96.0.2")
	if err != nil {
		return nil, err
	}
	udp, err := NewHub(s.dir, "pudp"+tag, "100.96.0.3")
	if err != nil {
		return nil, err
	}
	relay, err := NewRelay(bins, s.ru.ports, s.dir, "peers-relay"+tag, true, []Hub{tcp, udp})
	if err != nil {
		return nil, err
	}
	if err := relay.Start(); err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { relay.Proc.Stop() })
	version := cmdOut(s.ru.o.Root, "git", "describe", "--tags", "--always", "--dirty")
	if suffix != "" {
		version = "the build in " + filepath.Dir(bins.Hubtunnel)
	}
	var out []*peer
	for _, h := range []struct {
		hub       Hub
		transport string
		idle      string
	}{{tcp, "tcp", fmt.Sprintf("tcp port %d", relay.AgentPort)}, {udp, "udp", fmt.Sprintf("udp port %d", relay.UDPPort)}} {
		a, err := NewAgent(bins, s.ru.ports, s.dir, relay, h.hub, AgentSpec{Transport: h.transport, Targets: map[int]string{80: s.ru.bulk.Addr()}})
		if err != nil {
			return nil, err
		}
		if err := a.Start(); err != nil {
			return nil, err
		}
		s.started(a.Proc)
		if _, err := UntilOK(relay.TokenURL(h.hub.Name, 80, "/ping"), a.Proc.Started, 30*time.Second); err != nil {
			return nil, err
		}
		out = append(out, &peer{
			name: "hubtunnel " + h.transport + suffix, addr: relay.Public(80), host: h.hub.Name + ".localhost", auth: relay.AuthHeader(h.hub.Name),
			agent: a.Proc, relay: relay.Proc, idle: h.idle, version: version,
		})
	}
	return out, nil
}

// peerBin is a peer's binary in Options.PeerBins; when it is missing, the
// error says why from the build log scripts/bench-deps.sh left beside it.
func (s *peerSet) peerBin(tool, name string) (string, error) {
	path := filepath.Join(s.ru.o.PeerBins, name)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	why := fmt.Sprintf("%s is missing (scripts/bench-deps.sh builds it)", path)
	if b, err := os.ReadFile(filepath.Join(s.ru.o.PeerBins, tool+".err")); err == nil && len(b) > 0 {
		why = lastLine(string(b))
	}
	return "", fmt.Errorf("%s: not built: %s", tool, why)
}

// peerVersion is the module and version scripts/bench-deps.sh built tool
// from (TOOL.version beside the binaries).
func (s *peerSet) peerVersion(tool string) string {
	b, err := os.ReadFile(filepath.Join(s.ru.o.PeerBins, tool+".version"))
	if err != nil {
		return "version unknown (no " + tool + ".version)"
	}
	return strings.TrimSpace(string(b))
}

// secret is a random token for a peer's own authentication, written only
// to its config or environment.
func secret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// frp: frps with TLS forced, frpc with a TCP proxy to the bulk server,
// token authentication; everything else frp's defaults (TLS on, yamux
// multiplexing of the work connections, a heartbeat every 30 s).
func (s *peerSet) frp() ([]*peer, error) {
	frps, err := s.peerBin("frp", "frps")
	if err != nil {
		return nil, err
	}
	frpc, err := s.peerBin("frp", "frpc")
	if err != nil {
		return nil, err
	}
	bind, err := s.free()
	if err != nil {
		return nil, err
	}
	remote, err := s.free()
	if err != nil {
		return nil, err
	}
	token := secret()
	sconf := filepath.Join(s.dir, "frps.toml")
	if err := os.WriteFile(sconf, fmt.Appendf(nil, `bindAddr = "127.0.0.1"
bindPort = %d
proxyBindAddr = "127.0.0.1"
auth.token = %q
transport.tls.force = true
log.to = "console"
log.disablePrintColor = true
`, bind, token), 0o600); err != nil {
		return nil, err
	}
	cconf := filepath.Join(s.dir, "frpc.toml")
	if err := os.WriteFile(cconf, fmt.Appendf(nil, `serverAddr = "127.0.0.1"
serverPort = %d
auth.token = %q
transport.tls.enable = true
log.to = "console"
log.disablePrintColor = true

[[proxies]]
name = "bulk"
type = "tcp"
localIP = "127.0.0.1"
localPort = %s
remotePort = %d
`, bind, token, portOf(s.ru.bulk.Addr()), remote), 0o600); err != nil {
		return nil, err
	}
	server, err := s.start("frps", nil, "frps started successfully", frps, "-c", sconf)
	if err != nil {
		return nil, fmt.Errorf("frp: frps did not start: %w", err)
	}
	client, err := s.start("frpc", nil, "start proxy success", frpc, "-c", cconf)
	if err != nil {
		return nil, fmt.Errorf("frp: frpc did not start: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", remote)
	if err := through(addr); err != nil {
		return nil, fmt.Errorf("frp: %w", err)
	}
	return []*peer{{name: "frp (TLS, yamux)", addr: addr, agent: client, relay: server,
		idle: fmt.Sprintf("tcp port %d", bind), version: s.peerVersion("frp")}}, nil
}

// chisel: the server with --reverse, the client with one R: remote, both
// with a user and password (AUTH in their environment); otherwise chisel's
// defaults (SSH over a WebSocket over plain HTTP, an ephemeral server key,
// a keepalive every 25 s).
func (s *peerSet) chisel() ([]*peer, error) {
	bin, err := s.peerBin("chisel", "chisel")
	if err != nil {
		return nil, err
	}
	port, err := s.free()
	if err != nil {
		return nil, err
	}
	remote, err := s.free()
	if err != nil {
		return nil, err
	}
	env := []string{"AUTH=hub:" + secret()}
	server, err := s.start("chisel-server", env, "Listening on", bin, "server", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--reverse")
	if err != nil {
		return nil, fmt.Errorf("chisel: the server did not start: %w", err)
	}
	client, err := s.start("chisel-client", env, "", bin, "client", fmt.Sprintf("http://127.0.0.1:%d", port),
		fmt.Sprintf("R:127.0.0.1:%d:%s", remote, s.ru.bulk.Addr()))
	if err != nil {
		return nil, fmt.Errorf("chisel: the client did not start: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", remote)
	if err := through(addr); err != nil {
		return nil, fmt.Errorf("chisel: %w", err)
	}
	return []*peer{{name: "chisel (SSH over WebSocket)", addr: addr, agent: client, relay: server,
		idle: fmt.Sprintf("tcp port %d", port), version: s.peerVersion("chisel")}}, nil
}

// sshd is where Debian's openssh-server puts it.
const sshd = "/usr/sbin/sshd"

// ssh: `ssh -R` to an sshd of the bench's own on loopback, with a throwaway
// host key and user key; ciphers and everything else OpenSSH's defaults.
func (s *peerSet) ssh() ([]*peer, error) {
	if _, err := os.Stat(sshd); err != nil {
		return nil, fmt.Errorf("OpenSSH: not installed: %s is missing (scripts/bench-deps.sh installs openssh-server)", sshd)
	}
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return nil, errors.New("OpenSSH: not installed: no ssh client (Debian: openssh-client)")
	}
	dir := filepath.Join(s.dir, "ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hostKey, userKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "user_ed25519")
	for _, k := range []string{hostKey, userKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hubbench", "-f", k).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("OpenSSH: ssh-keygen: %v: %s", err, out)
		}
	}
	me, err := user.Current()
	if err != nil {
		return nil, err
	}
	port, err := s.free()
	if err != nil {
		return nil, err
	}
	remote, err := s.free()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `ListenAddress 127.0.0.1:%d
HostKey %s
AuthorizedKeysFile %s.pub
PidFile none
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
AllowTcpForwarding remote
`, port, hostKey, userKey), 0o600); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// sshd started by root separates privileges in this folder;
		// Debian's service makes it at boot, but no service runs here.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("OpenSSH: %w", err)
		}
	}
	server, err := s.start("sshd", nil, "Server listening on", sshd, "-D", "-e", "-f", conf)
	if err != nil {
		return nil, fmt.Errorf("OpenSSH: sshd did not start: %w", err)
	}
	client, err := s.start("ssh", nil, "", ssh, "-F", "/dev/null", "-N", "-T", "-p", fmt.Sprint(port), "-i", userKey,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ExitOnForwardFailure=yes",
		"-R", fmt.Sprintf("127.0.0.1:%d:%s", remote, s.ru.bulk.Addr()), me.Username+"@127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("OpenSSH: ssh did not start: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", remote)
	if err := through(addr); err != nil {
		return nil, fmt.Errorf("OpenSSH: %w; ssh's log: %s", err, tail(client.Log(), 300))
	}
	return []*peer{{name: "OpenSSH ssh -R", addr: addr, agent: client, relay: server, relayTree: true,
		idle: fmt.Sprintf("tcp port %d", port), version: firstLine(cmdErr(ssh, "-V"))}}, nil
}

func portOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// cmdErr is what a command writes to stderr (ssh -V).
func cmdErr(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}
