package relay

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// TestCloneRefusedWhileHubStaysConnected: a second agent with the hub's
// key (a copied hub) is refused with an error its owner can act on while
// the hub's own agent stays connected and keeps serving; the refusal is
// logged and in the owner's audit log. A burst of copies costs the hub one
// Ping, not one each.
func TestCloneRefusedWhileHubStaysConnected(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	h := tr.hubs.name("a")
	own := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(h) })
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET before the copy came: %d %v", code, err)
	}

	copies := make([]*testAgent, 4)
	var wg sync.WaitGroup
	for i := range copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			copies[i] = startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
		}()
	}
	wg.Wait()
	for _, c := range copies {
		poll.Until(t, 10*time.Second, "the copy to be refused", func() bool {
			return strings.Contains(c.bind.Status().LastError, "another connection with this hub's key is already live: if this hub was copied (a restored backup on a second device), give each its own key")
		})
		if c.handshaken() {
			t.Error("the relay answered a copy's handshake")
		}
	}
	if st := own.bind.Status(); !st.Connected || st.Connects != 1 {
		t.Fatalf("the hub's own agent after the copies: %+v, want its first connection up", st)
	}
	if n := h.online.Load(); n != 1 {
		t.Fatalf("%d connections count for the hub, want 1", n)
	}
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET through the hub's own agent after the copies: %d %v", code, err)
	}
	h.mu.Lock()
	probes := h.probes
	h.mu.Unlock()
	if probes != 1 {
		t.Errorf("%d copies cost the hub %d Pings, want 1", len(copies), probes)
	}
	if n := tr.logged(`msg="refused a connection with the key of a connected hub`, " hub=a "); n != 1 {
		t.Errorf("the refusals were logged %d times, want once a minute", n)
	}
	poll.Until(t, 10*time.Second, "the refusal in the audit log", func() bool {
		ev, err := tr.Store().Audit(context.Background(), store.AuditFilter{Hubs: []string{"a"}, Kind: store.KindClone})
		return err == nil && len(ev) == 1 && ev[0].Outcome == "refused" && strings.HasPrefix(ev[0].Source, "127.0.0.1:")
	})
}

// TestHubBackAfterDeadConnectionIsAdmitted: when the hub's connection
// died without a FIN (its router restarted, say), the relay still holds it
// open; the hub connecting again is not taken for a copy: the old
// connection does not answer its Ping, is closed, and the hub is online
// again within about 2 s.
func TestHubBackAfterDeadConnectionIsAdmitted(t *testing.T) {
	tr := startTestRelay(t, false, "a")
	h := tr.hubs.name("a")
	fw := newForwarder(t, tr.AgentAddr().String())
	old := startTestAgentVia(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{}, tr.PublicKey(), fw.addr(), nil)
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(h) })
	last := old.lastHandshake()

	// A copy now is refused: the old connection answers.
	cp := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the copy to be refused", func() bool {
		return strings.Contains(cp.bind.Status().LastError, "another connection with this hub's key is already live")
	})
	cp.Close()

	// The old connection goes silent both ways, without a FIN; its Pong
	// from a moment ago no longer counts.
	fw.blackhole()
	tr.clock.advance(proofFresh)
	poll.Until(t, time.Second, "20 ms since the last handshake", func() bool { return time.Since(last) > 25*time.Millisecond })
	start := time.Now()
	back := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", vpn.PublicKey{})
	poll.Until(t, 10*time.Second, "the hub back online over its new connection", back.handshaken)
	t.Logf("the hub was back %v after it connected again", time.Since(start))
	if d := time.Since(start); d > pingTimeout+time.Second {
		t.Errorf("the hub was back after %v, want about %v", d, pingTimeout)
	}
	if code, err := tr.get("a"); err != nil || code != 200 {
		t.Fatalf("GET after the hub came back: %d %v", code, err)
	}
	if n := h.online.Load(); n != 1 {
		t.Errorf("%d connections count for the hub, want 1: the dead one was not closed", n)
	}
	if tr.logged(`msg="hub connection did not answer a ping`, " hub=a ") != 1 {
		t.Error("the relay did not log closing the silent connection")
	}
	if st := back.bind.Status(); !st.Connected || st.LastError != "" {
		t.Errorf("the hub's new connection: %+v", st)
	}
}

// forwarder relays TCP connections to a target until blackhole, after
// which it passes nothing either way and closes nothing: a connection
// whose path died without a FIN.
type forwarder struct {
	ln     net.Listener
	target string
	dead   atomic.Bool
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			go f.pipe(up, c)
			go f.pipe(c, up)
		}
	}()
	return f
}

func (f *forwarder) addr() string { return f.ln.Addr().String() }

func (f *forwarder) blackhole() { f.dead.Store(true) }

// pipe copies from src to dst until either ends, passing nothing once
// blackholed (what it reads then is dropped, and no end is passed on).
func (f *forwarder) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if f.dead.Load() {
			if err != nil {
				return
			}
			continue
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if cw, ok := dst.(*net.TCPConn); ok {
				cw.CloseWrite()
			}
			return
		}
	}
}
