package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRelayBadInput sends what is not an agent to the relay's agent port —
// random bytes, broken frames, silence — while a real agent keeps its hub
// reachable. The relay must stay up, keep serving the hub, leave the real
// agent's connection alone, and close every bad connection: at once where
// the input is plainly wrong, after its 10 s hello timeout where it is
// silent or incomplete.
func TestRelayBadInput(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	first := s.waitConnected(15 * time.Second)
	s.mustGetWebUI()

	// GETs through the real hub, every 100 ms until stop is closed.
	stop := make(chan struct{})
	var gets, getFails int
	var getErr error
	getsDone := make(chan struct{})
	go func() {
		defer close(getsDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			code, body, err := s.get(s.url("http", "demo", 80, "/"))
			gets++
			if err != nil || code != 200 || !strings.Contains(body, "HomeMatic WebUI") {
				getFails++
				getErr = fmt.Errorf("HTTP status %d, %v", code, err)
			}
		}
	}()

	random := make([]byte, 4096)
	rand.Read(random)
	garbage := make([]byte, 100)
	rand.Read(garbage)
	garbage[0] = 0x55 // neither WireGuard (1–4) nor a control type
	wgLike := append([]byte{1, 0, 0, 0}, garbage[4:]...)
	var strangerKey [32]byte
	rand.Read(strangerKey[:])
	hubKey, err := base64.StdEncoding.DecodeString(s.hubPub)
	if err != nil {
		t.Fatal(err)
	}

	type bad struct {
		name      string
		send      []byte
		closeSend bool   // half-close after sending
		quick     bool   // plainly wrong: must be closed long before the hello timeout
		wantReply string // text the relay must answer with before closing
	}
	cases := []bad{
		{name: "random bytes", send: random},
		{name: "truncated frame", send: append([]byte{0, 100}, garbage[:50]...)},
		{name: "truncated frame, then EOF", send: append([]byte{0, 100}, garbage[:50]...), closeSend: true, quick: true},
		{name: "length 0xFFFF", send: append([]byte{0xff, 0xff}, garbage...), quick: true},
		{name: "length 0", send: []byte{0, 0, 1, 2, 3}, quick: true},
		{name: "100-byte frame of garbage type", send: frame(garbage), quick: true},
		{name: "WireGuard message before hello", send: frame(wgLike), quick: true},
		{name: "hello too short", send: frame([]byte{0xA0, 1, 2, 3}), quick: true, wantReply: "malformed hello"},
		{name: "hello from an unknown key", send: frame(hello(strangerKey[:], "e2e/stranger")), quick: true, wantReply: "not registered"},
		{name: "hello with control characters", send: frame(hello(strangerKey[:], "e2e\x1b[31m")), quick: true, wantReply: "malformed hello"},
	}
	for range 50 {
		cases = append(cases, bad{name: "idle"})
	}

	type result struct {
		bad
		took  time.Duration
		err   error // how the read ended
		reply []byte
	}
	// Claiming the real hub's key proves nothing (WireGuard authenticates
	// every packet), and frames of unknown type after a hello are ignored
	// for later protocol versions; the relay drops the connection once its
	// handshake timeout passes (TestRelaySpoofedHello).
	// It must not take the hub over: the GETs go on.
	impostor, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.agentPort))
	if err != nil {
		t.Fatal(err)
	}
	defer impostor.Close()
	impostor.Write(append(frame(hello(hubKey, "e2e/impostor")), append(frame(garbage), frame(wgLike)...)...))

	results := make([]result, len(cases))
	var wg sync.WaitGroup
	began := time.Now()
	for i, c := range cases {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.agentPort))
		if err != nil {
			t.Fatalf("%s: dial the relay's agent port: %v", c.name, err)
		}
		t.Cleanup(func() { conn.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			opened := time.Now()
			if len(c.send) > 0 {
				conn.Write(c.send)
			}
			if c.closeSend {
				conn.(*net.TCPConn).CloseWrite()
			}
			conn.SetReadDeadline(time.Now().Add(25 * time.Second))
			reply, err := io.ReadAll(conn)
			if err == nil {
				err = io.EOF
			}
			results[i] = result{bad: c, took: time.Since(opened), err: err, reply: reply}
		}()
	}
	wg.Wait()
	close(stop)
	<-getsDone
	t.Logf("%d bad connections ended %v after they were opened", len(cases), time.Since(began).Round(time.Millisecond))

	for _, r := range results {
		if errors.Is(r.err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: the relay kept the connection open for %v", r.name, r.took.Round(time.Millisecond))
			continue
		}
		if r.took > 20*time.Second || r.quick && r.took > 5*time.Second {
			t.Errorf("%s: closed after %v; plainly bad input should be dropped at once", r.name, r.took.Round(time.Millisecond))
		}
		if r.wantReply != "" && !bytes.Contains(r.reply, []byte(r.wantReply)) {
			t.Errorf("%s: the relay answered %q; want an error frame saying %q", r.name, r.reply, r.wantReply)
		}
		if r.name != "idle" {
			t.Logf("%-45s closed after %8v (%v)", r.name, r.took.Round(time.Millisecond), r.err)
		}
	}

	if gets == 0 || getFails > 0 {
		t.Errorf("GETs through the real hub during the bad input: %d of %d failed (last: %v)", getFails, gets, getErr)
	}
	if !s.relay.alive() {
		t.Fatalf("the relay died: %v", s.relay.err)
	}
	s.mustGetWebUI()
	st, err := s.status()
	if err != nil || st.State != "connected" || !st.ConnectedSince.Equal(first.ConnectedSince) {
		t.Errorf("agent status after the bad input: %+v, %v; want still the first connection (since %v)", st, err, first.ConnectedSince)
	}
	if log := s.relay.logText(); strings.Contains(log, "panic") {
		t.Errorf("the relay's log mentions a panic")
	}
}

// frame puts payload behind its 2-byte big-endian length (wire/README.md).
func frame(payload []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(payload))), payload...)
}

// hello is a Hello payload: 0xA0, version 1, the 32-byte key, software.
func hello(key []byte, software string) []byte {
	return append(append([]byte{0xA0, 1}, key...), software...)
}

// TestRelaySpoofedHello: a connection whose Hello names a registered hub's
// key but which cannot complete a WireGuard handshake (it does not hold the
// key) does not make that hub count as online, and the relay drops it
// after its handshake timeout (20 s).
func TestRelaySpoofedHello(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{offlineHubs: 1})
	m := regexp.MustCompile(`name = "offline1"\npublic_key = "([^"]+)"`).FindStringSubmatch(readFileString(s.relayConf))
	if m == nil {
		t.Fatal("offline1's key not in the relay config")
	}
	key, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.agentPort))
	if err != nil {
		t.Fatal(err)
	}
	defer impostor.Close()
	wgLike := append([]byte{1, 0, 0, 0}, make([]byte, 144)...) // an initiation that cannot verify
	opened := time.Now()
	impostor.Write(append(frame(hello(key, "e2e/impostor")), frame(wgLike)...))

	// The claim alone must not turn "hub offline" into a 10 s wait.
	// With offline1's own token, so the answer is the offline one.
	t0 := time.Now()
	code, body, err := s.get(s.url("http", "offline1", 80, "/"))
	if err != nil || code != 404 || !strings.Contains(body, "Nothing is reachable") || time.Since(t0) > 3*time.Second {
		t.Fatalf("offline hub behind a spoofed hello: %d %v after %v: %.200q", code, err, time.Since(t0), body)
	}
	impostor.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = io.ReadAll(impostor)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the relay kept a connection that never completed a handshake for %v", time.Since(opened).Round(time.Second))
	}
	t.Logf("spoofed connection closed after %v", time.Since(opened).Round(time.Millisecond))
}
