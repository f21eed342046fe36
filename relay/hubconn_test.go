package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/vpn/netstack"
)

// rawHub is a hub's server written by hand, on tunnel port 2010 of a test
// agent (which serves nothing there): each request is answered by serve,
// with the connection's number; the hub's side of the story (which
// connection each request came on, which connections the relay closed) is
// kept for the test.
type rawHub struct {
	mu     sync.Mutex
	reqs   []int        // the connection of each request, in order
	closed map[int]bool // connections the relay closed (read EOF or reset)
	serve  func(hc *hubSide) bool
}

// hubSide is one request on one of the hub's connections.
type hubSide struct {
	conn net.Conn
	br   *bufio.Reader
	req  *http.Request
	n    int // the connection's number
}

// startRawHub starts relay tr with hub a and its agent, with plaintext
// ports, before called on the Server before it starts; serve answers each
// request on port 2010 and says whether the connection goes on.
func startRawHub(t *testing.T, before func(*Server), serve func(hc *hubSide) bool) (*testRelay, *rawHub) {
	tr := startTestRelayHook(t, false, func(c *Config) {
		c.PlaintextPorts = true
		c.LimitRequestsPerSecond = 1e6
	}, before, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(tr.hubs.name("a")) })
	h := &rawHub{closed: map[int]bool{}, serve: serve}
	ln, err := a.stack.ListenTCP(2010)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.conn(c, n)
		}
	}()
	return tr, h
}

func (h *rawHub) conn(c net.Conn, n int) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			h.mu.Lock()
			h.closed[n] = true
			h.mu.Unlock()
			return
		}
		h.mu.Lock()
		h.reqs = append(h.reqs, n)
		h.mu.Unlock()
		if !h.serve(&hubSide{conn: c, br: br, req: req, n: n}) {
			return
		}
	}
}

func (h *rawHub) requests() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.reqs...)
}

func (h *rawHub) wasClosed(n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed[n]
}

// waitClosed waits for the hub to read its connection n's end.
func (h *rawHub) waitClosed(t *testing.T, n int, what string) {
	t.Helper()
	poll.Until(t, 10*time.Second, what, func() bool { return h.wasClosed(n) })
}

// userConn is a user's connection to the relay's port 2010.
func userConn(t *testing.T, tr *testRelay) (net.Conn, *bufio.Reader) {
	c := tr.dialPublic(t, 2010, nil, "")
	return c, bufio.NewReader(c)
}

func (tr *testRelay) head(method, extra string) string {
	return method + " /x HTTP/1.1\r\nHost: a.localhost\r\n" + tr.auth("a") + extra + "\r\n"
}

// TestHubLegAnswers: each kind of answer a hub gives reaches the user
// whole, and the connection to the hub carries the user connection's next
// request exactly when the answer left it fit to: read to its end, no
// Connection: close, a length or chunks rather than the hub's EOF. An
// answer that ends with the hub's EOF ends the user's connection too
// (unchunked), and the next request comes on a new one.
func TestHubLegAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, method, answer string
		hubCloses            bool   // the hub closes after answering (else it waits for the next request)
		body, trailer        string // what the user gets
		codes                []int  // the answers the user gets, 1xx first
		reused               bool
		userClosed           bool // the relay ends the user's connection after the answer
	}{
		{"length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, "ok", "", []int{200}, true, false},
		{"chunked with trailer", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 7\r\n\r\n", false, "ok", "7", []int{200}, true, false},
		{"hub says close", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false, "ok", "", []int{200}, false, false},
		{"no length: to the hub's EOF", "GET", "HTTP/1.1 200 OK\r\n\r\nok", true, "ok", "", []int{200}, false, true},
		{"HTTP/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, "ok", "", []int{200}, false, false},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, "", "", []int{200}, true, false},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", false, "", "", []int{204}, true, false},
		{"304", "GET", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false, "", "", []int{304}, true, false},
		{"103 then 200", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, "ok", "", []int{103, 200}, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tr, h := startRawHub(t, nil, func(hc *hubSide) bool {
				io.WriteString(hc.conn, tt.answer)
				return !tt.hubCloses
			})
			c, br := userConn(t, tr)
			for i := range 2 {
				if i > 0 && tt.userClosed {
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := br.ReadByte(); err != io.EOF {
						t.Fatalf("after the answer that ended with the hub's EOF, the user's connection read %v; want it closed", err)
					}
					c, br = userConn(t, tr)
				}
				io.WriteString(c, tr.head(tt.method, ""))
				for _, code := range tt.codes {
					resp, err := http.ReadResponse(br, &http.Request{Method: tt.method})
					if err != nil || resp.StatusCode != code {
						t.Fatalf("request %d: %v %v; want %d", i, resp, err, code)
					}
					if code >= 200 {
						body, err := io.ReadAll(resp.Body)
						if err != nil || string(body) != tt.body || resp.Trailer.Get("X-Sum") != tt.trailer {
							t.Fatalf("request %d: body %q trailer %q %v; want %q, %q", i, body, resp.Trailer.Get("X-Sum"), err, tt.body, tt.trailer)
						}
						if tt.userClosed && (len(resp.TransferEncoding) > 0 || !resp.Close) {
							t.Fatalf("request %d: transfer encoding %q, close %v; want it unchunked, ended by closing", i, resp.TransferEncoding, resp.Close)
						}
						if tt.method == "HEAD" && resp.ContentLength != 5 {
							t.Fatalf("HEAD: Content-Length %d, want the hub's 5", resp.ContentLength)
						}
					}
				}
			}
			reqs := h.requests()
			if got := reqs[0] == reqs[1]; got != tt.reused {
				t.Errorf("the two requests came to the hub on connections %v; want the same: %v", reqs, tt.reused)
			}
		})
	}
}

// TestHubLegClosesWhatItCannotReuse: an answer the user leaves before its
// end (the user hangs up mid-answer, the hub streaming) closes the
// connection to the hub at once, and so does a hub that sends no answer
// head within the answer timeout, one that switches protocols unasked,
// or a connection idle for the idle timeout (so the agent's session ends).
func TestHubLegClosesWhatItCannotReuse(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	tr, h := startRawHub(t, func(s *Server) {
		s.proxy.answerTimeout = 300 * time.Millisecond
		s.proxy.idleTimeout = 300 * time.Millisecond
	}, func(hc *hubSide) bool {
		switch hc.req.Header.Get("X-Test") {
		case "stream": // a head and a first part, then nothing until the relay hangs up
			io.WriteString(hc.conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
			return true
		case "switch": // to a protocol the user did not ask for
			io.WriteString(hc.conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			return true
		case "silent": // never an answer
			<-stall
			return false
		case "cut short": // 5 bytes of 100, then the connection ends
			io.WriteString(hc.conn, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
			return false
		case "huge head": // a whole head of 2 MiB, twice what the relay reads
			io.WriteString(hc.conn, "HTTP/1.1 200 OK\r\n"+strings.Repeat("X-Junk: "+strings.Repeat("j", 56)+"\r\n", 2<<20/66)+"Content-Length: 0\r\n\r\n")
			return false
		}
		io.WriteString(hc.conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})

	t.Run("user hangs up mid-answer", func(t *testing.T) {
		served := tr.logged("msg=request")
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("GET", "X-Test: stream\r\n"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); line != "first\n" {
			t.Fatalf("the streamed first part: %q %v", line, err)
		}
		c.Close()
		h.waitClosed(t, h.requests()[len(h.requests())-1], "the hub's connection closed after the user left")
		// A user leaving is no failure of the hub's: the access log
		// says it, and nothing else does.
		poll.Until(t, 10*time.Second, "the request's access log line", func() bool { return tr.logged("msg=request") > served })
		if n := tr.logged("proxy to a hub failed"); n != 0 {
			t.Errorf("a user hanging up was logged as the hub's failure %d times", n)
		}
	})
	t.Run("user leaves before the answer", func(t *testing.T) {
		n, served, failed := len(h.requests()), tr.logged("msg=request"), tr.logged("status=502")
		c, _ := userConn(t, tr)
		io.WriteString(c, tr.head("GET", "X-Test: silent\r\n"))
		poll.Until(t, 10*time.Second, "the hub got the request", func() bool { return len(h.requests()) > n })
		c.Close() // well within the answer timeout
		poll.Until(t, 10*time.Second, "the request's access log line", func() bool { return tr.logged("msg=request") > served })
		if got := tr.logged("method=GET status=499"); got != 1 {
			t.Errorf("%d log lines say the user left (status=499); want 1", got)
		}
		if tr.logged("status=502") != failed || tr.logged("a request to the hub failed") != 0 {
			t.Errorf("a user who left was logged as the hub's failure")
		}
	})
	// net/http takes a half-close for leaving: a user who half-closes
	// after the request still gets an answer, a 502, never an empty 200.
	t.Run("user half-closes before the answer", func(t *testing.T) {
		n := len(h.requests())
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("GET", "X-Test: silent\r\n"))
		poll.Until(t, 10*time.Second, "the hub got the request", func() bool { return len(h.requests()) > n })
		c.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("a half-closed user's answer: %v %v; want 502", resp, err)
		}
	})
	t.Run("the hub breaks off mid-answer", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("GET", "X-Test: cut short\r\n"))
		// The user's connection breaks (ErrAbortHandler): no answer
		// that looks whole.
		if resp, err := http.ReadResponse(br, nil); err == nil {
			if body, err := io.ReadAll(resp.Body); err == nil {
				t.Errorf("an answer the hub cut short reached the user whole: %d %q", resp.StatusCode, body)
			}
		}
		poll.Until(t, 10*time.Second, "the relay's log to say the hub's answer broke off", func() bool {
			return tr.logged("proxy to a hub failed", "unexpected EOF") == 1
		})
	})
	// badGateway asks the hub for answer test and wants the user to get 502.
	badGateway := func(t *testing.T, test, what string) {
		t.Helper()
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("GET", "X-Test: "+test+"\r\n"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("%s: %v %v; want 502", what, resp, err)
		}
	}
	t.Run("no answer head in time", func(t *testing.T) {
		badGateway(t, "silent", "a hub that never answers")
		poll.Until(t, 10*time.Second, "a log line naming the timeout", func() bool { return tr.logged("no answer within 300ms") == 1 })
	})
	t.Run("an answer head over the limit", func(t *testing.T) {
		badGateway(t, "huge head", "a hub whose answer head is 2 MiB")
	})
	t.Run("an upgrade not asked for", func(t *testing.T) {
		badGateway(t, "switch", "a hub switching protocols unasked")
		h.waitClosed(t, h.requests()[len(h.requests())-1], "the switched connection closed")
	})
	t.Run("idle", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("GET", ""))
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		h.waitClosed(t, h.requests()[len(h.requests())-1], "an idle kept connection closed")
	})
}

// TestHubLegRequestBodies: a request's body streams to the hub as the
// user sends it; a hub that answers before it has read a large body (413)
// gets its answer to the user rather than stalling the relay; Expect:
// 100-continue passes the hub's 100 on, sends the body without one after
// the continue timeout, and never sends it after a final answer.
func TestHubLegRequestBodies(t *testing.T) {
	got := make(chan string, 10)
	tr, h := startRawHub(t, func(s *Server) { s.proxy.continueTimeout = 200 * time.Millisecond }, func(hc *hubSide) bool {
		switch hc.req.Header.Get("X-Test") {
		case "early":
			io.WriteString(hc.conn, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig")
			return false
		case "continue":
			io.WriteString(hc.conn, "HTTP/1.1 100 Continue\r\n\r\n")
		case "refuse":
			io.WriteString(hc.conn, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno")
			return true // and read the connection's end, or a body sent after all
		case "first half":
			buf := make([]byte, 5)
			io.ReadFull(hc.req.Body, buf)
			got <- string(buf)
		}
		body, _ := io.ReadAll(hc.req.Body)
		fmt.Fprintf(hc.conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	})
	answer := func(t *testing.T, br *bufio.Reader, code int, body string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("want %d %q: %v", code, body, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != code || string(b) != body {
			t.Fatalf("%d %q, want %d %q", resp.StatusCode, b, code, body)
		}
	}
	t.Run("streamed", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "X-Test: first half\r\nContent-Length: 10\r\n")+"hello")
		select {
		case part := <-got:
			if part != "hello" {
				t.Fatalf("the hub read %q first", part)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the hub did not get the body's first half before the user sent the rest")
		}
		io.WriteString(c, "world")
		answer(t, br, 200, "world")
	})
	t.Run("chunked", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "Transfer-Encoding: chunked\r\n")+"5\r\nhello\r\n0\r\n\r\n")
		answer(t, br, 200, "hello")
	})
	t.Run("hub answers 413 early", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "X-Test: early\r\nContent-Length: 100000000\r\n"))
		go func() { // more than every buffer on the way holds
			chunk := make([]byte, 64<<10)
			for range 1000 {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		answer(t, br, 413, "big")
	})
	t.Run("100 continue", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "X-Test: continue\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"))
		answer(t, br, 100, "")
		io.WriteString(c, "hello")
		answer(t, br, 200, "hello")
	})
	t.Run("no 100 from the hub", func(t *testing.T) {
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "Expect: 100-continue\r\nContent-Length: 5\r\n"))
		answer(t, br, 100, "") // the relay's own, when the body goes after the timeout
		io.WriteString(c, "hello")
		answer(t, br, 200, "hello")
	})
	// A body that breaks off on the user's side (the user leaves, or
	// sends a broken chunk and waits) closes the connection to the hub at
	// once: the hub would otherwise wait for the rest until its own
	// timeout. It is not logged as the hub's failure.
	for _, tt := range []struct {
		name, head, part, more string
		leave                  bool
	}{
		{"user leaves mid-body", "Content-Length: 100\r\n", "0123456789", "", true},
		{"user leaves mid-chunk", "Transfer-Encoding: chunked\r\n", "a\r\n01234", "", true},
		{"broken chunk", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n", "zz\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := len(h.requests())
			c, br := userConn(t, tr)
			io.WriteString(c, tr.head("POST", tt.head)+tt.part)
			poll.Until(t, 10*time.Second, "the hub got the request", func() bool { return len(h.requests()) > n })
			if tt.leave {
				c.Close()
			} else {
				io.WriteString(c, tt.more)
			}
			h.waitClosed(t, h.requests()[n], "the relay closed the connection to the hub")
			if !tt.leave {
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("want 400 for a broken body: %v %v", resp, err)
				}
			}
			if line := tr.log.find("a request to the hub failed"); line != "" {
				t.Fatalf("logged as the hub's failure: %s", line)
			}
		})
	}
	t.Run("user leaves before the body", func(t *testing.T) {
		n, logged := len(h.requests()), tr.logged("method=POST", "status=400")
		c, _ := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "Content-Length: 5\r\n"))
		time.Sleep(50 * time.Millisecond) // the relay waits in its read of the body
		c.Close()
		poll.Until(t, 10*time.Second, "the relay logged the request", func() bool { return tr.logged("method=POST", "status=400") > logged })
		if got := len(h.requests()); got != n {
			t.Fatalf("the hub got a request whose body never came")
		}
	})
	t.Run("final answer before 100", func(t *testing.T) {
		n := len(h.requests())
		c, br := userConn(t, tr)
		io.WriteString(c, tr.head("POST", "X-Test: refuse\r\nExpect: 100-continue\r\nContent-Length: 5\r\n"))
		answer(t, br, 401, "no")
		h.waitClosed(t, h.requests()[n], "the connection whose request lost its body closed")
	})
}

// TestHubLegStaleConnection: a kept connection the hub closed while it was
// idle (lighttpd drops them after 5 s; the relay keeps them 10 s) does not
// fail the user's next request, a GET or a POST.
func TestHubLegStaleConnection(t *testing.T) {
	tr, h := startRawHub(t, nil, func(hc *hubSide) bool {
		body, _ := io.ReadAll(hc.req.Body)
		fmt.Fprintf(hc.conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return false // and close, with no Connection: close
	})
	c, br := userConn(t, tr)
	for i, req := range []string{tr.head("GET", ""), tr.head("GET", ""), tr.head("POST", "Content-Length: 2\r\n") + "hi", tr.head("GET", "")} {
		// The relay has read the hub's FIN: its connection is readable.
		poll.Until(t, 10*time.Second, "the hub's close reached the relay", func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			for c := range tr.conns {
				if nc, ok := c.(*netstack.TCPConn); ok && !nc.Readable() {
					return false
				}
			}
			return true
		})
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d after the hub closed the kept connection: %v %v", i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	if n := len(h.requests()); n != 4 {
		t.Errorf("the hub got %d requests, want 4", n)
	}
}

// TestHubLegRetriesAGetOnAClosedConnection: a GET sent on a kept
// connection the hub closed at the same moment (no byte of an answer) goes
// again on a new one, as Transport did; the user sees one answer.
func TestHubLegRetriesAGetOnAClosedConnection(t *testing.T) {
	tr, h := startRawHub(t, nil, func(hc *hubSide) bool {
		if hc.n == 0 && len(hc.req.Header.Values("X-Second")) > 0 {
			return false // read the request, close without a word
		}
		io.WriteString(hc.conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	c, br := userConn(t, tr)
	for i, extra := range []string{"", "X-Second: 1\r\n"} {
		io.WriteString(c, tr.head("GET", extra))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	if reqs := h.requests(); len(reqs) != 3 || reqs[2] == reqs[1] {
		t.Errorf("the hub got requests on connections %v; want the second again on a new one", reqs)
	}
}

// TestHubLegNewAgentNewConnection: after a hub's agent reconnects (a new
// netstack behind the tunnel), a user connection's next request, even one
// that may not be sent twice, goes on a new connection, not the kept one
// the old agent had accepted.
func TestHubLegNewAgentNewConnection(t *testing.T) {
	tr := startTestRelayWith(t, false, func(c *Config) { c.PlaintextPorts = true }, "a")
	a := startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
	h := tr.hubs.name("a")
	poll.Until(t, 10*time.Second, "hub a online", func() bool { return tr.hubs.online(h) })
	c := tr.dialPublic(t, 2001, nil, "")
	br := bufio.NewReader(c)
	post := tr.head("POST", "Content-Length: 2\r\n") + "hi"
	post = strings.Replace(post, "/x", "/sum", 1)
	for i := range 2 {
		io.WriteString(c, post)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: %v %v", i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		if i == 1 {
			break
		}
		a.Close()
		poll.Until(t, 10*time.Second, "hub a offline", func() bool { return !tr.hubs.online(h) })
		startTestAgent(t, tr, tr.keys["a"], "100.96.0.2", [32]byte{})
		poll.Until(t, 10*time.Second, "hub a online again", func() bool { return tr.hubs.online(h) })
	}
}

// chunks is a body that arrives in parts: each Read returns the next one.
type chunks struct {
	parts []string
	end   error // after the last part
}

func (c *chunks) Read(p []byte) (int, error) {
	if len(c.parts) == 0 {
		return 0, c.end
	}
	n := copy(p, c.parts[0])
	if c.parts[0] = c.parts[0][n:]; c.parts[0] == "" {
		c.parts = c.parts[1:]
	}
	return n, nil
}

func (c *chunks) Close() error { return nil }

// TestSentBody: which request bodies go to the hub whole, in one write
// with the head, and that every byte goes, in order, either way.
func TestSentBody(t *testing.T) {
	for _, tt := range []struct {
		name   string
		length int64
		expect string
		body   *chunks
		whole  bool
		err    bool
	}{
		{"sent whole", 5, "", &chunks{parts: []string{"hello"}, end: io.EOF}, true, false},
		{"first part only", 10, "", &chunks{parts: []string{"hello", "world"}, end: io.EOF}, false, false},
		{"too large to wait for", maxSentBody + 1, "", &chunks{parts: []string{strings.Repeat("x", maxSentBody+1)}, end: io.EOF}, false, false},
		{"waits for the hub's 100", 5, "100-continue", &chunks{parts: []string{"hello"}, end: io.EOF}, false, false},
		{"unknown length", -1, "", &chunks{parts: []string{"hello"}, end: io.EOF}, false, false},
		{"shorter than said", 10, "", &chunks{parts: nil, end: io.EOF}, false, true},
		{"broken", 10, "", &chunks{parts: nil, end: errors.New("reset")}, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := strings.Join(tt.body.parts, "")
			r, _ := http.NewRequest("POST", "http://100.96.0.2:2001/x", nil)
			r.Body, r.ContentLength = tt.body, tt.length
			if tt.expect != "" {
				r.Header.Set("Expect", tt.expect)
			}
			out, whole, err := sentBody(r)
			if tt.err {
				if !errors.Is(err, errUserBody) {
					t.Fatalf("err %v, want the user's body broken", err)
				}
				return
			}
			if err != nil || whole != tt.whole {
				t.Fatalf("whole %v, err %v; want whole %v", whole, err, tt.whole)
			}
			var buf bytes.Buffer
			if err := out.Write(&buf); err != nil {
				t.Fatal(err)
			}
			got, err := http.ReadRequest(bufio.NewReader(&buf))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(got.Body)
			if string(b) != want {
				t.Fatalf("the hub got %d bytes, want the %d sent", len(b), len(want))
			}
		})
	}
}
