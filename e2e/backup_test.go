package e2e

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/testbed"
)

// TestBackupDuringTrafficRestoreIntoFreshRelay: `hubrelay backup` while a
// user downloads from the hub leaves the download whole; the backup,
// restored into an empty folder with only the relay's config in it, is a
// relay the hub reconnects to by itself (it pins the relay's key, which
// the backup carried) and the user's app token (in the store only) works
// through.
func TestBackupDuringTrafficRestoreIntoFreshRelay(t *testing.T) {
	t.Parallel()
	files := t.TempDir()
	const size = 8 << 20
	writeRandomFile(t, files, "big.bin", size)
	s := newHub(t, setupOpts{filesDir: files})
	s.startAgent(agentOpts{})
	s.waitConnected(15 * time.Second)

	resp, err := s.client.Get(s.url("http", "demo", 80, "/files/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET big.bin: %s", resp.Status)
	}
	// Read slowly (~6 MB/s), and back up once a megabyte has arrived.
	archive := filepath.Join(t.TempDir(), "relay-backup.tar.gz")
	buf := make([]byte, 32<<10)
	var got int64
	var backedUp bool
	for i := 0; i < 4*size/len(buf); i++ {
		n, err := io.ReadFull(resp.Body, buf)
		got += int64(n)
		if err != nil {
			break
		}
		if !backedUp && got >= 1<<20 {
			run(t, bins.Hubrelay, "backup", archive, "--config", s.relayConf)
			backedUp = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !backedUp || got != size {
		t.Fatalf("download: %d of %d bytes (backed up during it: %v)", got, size, backedUp)
	}

	s.relay.stop(t)
	fresh := t.TempDir()
	conf := filepath.Join(fresh, "relay.toml")
	writeFile(t, conf, readFileString(s.relayConf))
	out := run(t, bins.Hubrelay, "restore", archive, "--config", conf)
	if !strings.Contains(out, s.relayPub) {
		t.Fatalf("restore: %s; want the relay key %s named", out, s.relayPub)
	}
	if _, err := os.Stat(filepath.Join(fresh, "relay.db")); err != nil {
		t.Fatalf("no store in the fresh relay's folder: %v", err)
	}

	p := start(t, fresh, "relay-restored", bins.Hubrelay, "run", "--config", conf)
	poll.Until(t, 10*time.Second, "the restored relay to listen", func() bool {
		if !p.alive() {
			t.Fatalf("restored relay exited: %v\n%s", p.err, p.logText())
		}
		return strings.Contains(p.logText(), testbed.RelayReady)
	})
	s.waitConnected(90 * time.Second)
	s.mustGetWebUI()

	// A second relay on the same store is refused: one relay per SQLite
	// store.
	out, err = runErr(bins.Hubrelay, "run", "--config", conf)
	if err == nil || !strings.Contains(out, "in use by a running relay") {
		t.Errorf("a second relay on the restored store: %v: %s", err, out)
	}
}
