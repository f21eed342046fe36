package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHubRemoveCutsDownloadAtOnce: `hubrelay hub remove`, run while a user
// downloads from the hub, ends that download within a second, and the hub
// is not served afterwards (the issue's "cuts the hub off within a
// second"). The download is read slowly, so it is still running when the
// operator acts.
func TestHubRemoveCutsDownloadAtOnce(t *testing.T) {
	t.Parallel()
	files := t.TempDir()
	writeRandomFile(t, files, "backup.bin", 50<<20)
	s := newHub(t, setupOpts{filesDir: files})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	// A user on a slow line: a small receive buffer, as the network's
	// would be, so that what counts is when the relay stops sending.
	slow := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10)
				})
			}}
			return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
		},
	}}
	defer slow.CloseIdleConnections()
	resp, err := slow.Get(s.url("http", "demo", 80, "/files/backup.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /files/backup.bin: %s", resp.Status)
	}
	// About 1.6 MB/s: 30 s for the whole file, bounded by the loop's count.
	buf := make([]byte, 32<<10)
	var got int64
	var removed time.Time
	var readErr error
	for i := 0; i < 2000; i++ {
		n, err := io.ReadFull(resp.Body, buf)
		got += int64(n)
		if err != nil {
			readErr = err
			break
		}
		if removed.IsZero() && got >= 1<<20 {
			out := run(t, bins.Hubrelay, "hub", "remove", "demo", "--config", s.relayConf)
			if !strings.Contains(out, "removed hub demo") {
				t.Fatalf("hub remove: %s", out)
			}
			removed = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if removed.IsZero() {
		t.Fatalf("the download ended before the hub was removed (%d bytes, %v)", got, readErr)
	}
	cut := time.Since(removed)
	if readErr == nil || got == 50<<20 {
		t.Fatalf("the download went on after the hub was removed: %d bytes", got)
	}
	t.Logf("download cut %v after hub remove returned, after %d bytes (%v)", cut.Round(time.Millisecond), got, readErr)
	if cut > time.Second+200*time.Millisecond { // the read loop's own step is 20 ms
		t.Errorf("the download was cut %v after hub remove; want within a second", cut)
	}
	if _, body, _ := s.get(s.url("https", "demo", 443, "/")); strings.Contains(body, "HomeMatic WebUI") {
		t.Error("the removed hub's WebUI is still served")
	}
}
