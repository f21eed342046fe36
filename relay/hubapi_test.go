package relay

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// TestReleasesServeOnlyTheFolder: hubs get the release files and nothing
// else of the relay's disk, however they spell the path.
func TestReleasesServeOnlyTheFolder(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "releases")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(`{"payload":""}`), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(base, "relay.key"), []byte("secret"), 0o600)
	os.Symlink(filepath.Join(base, "relay.key"), filepath.Join(dir, "key-link"))

	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	s := &Server{log: logger.ToSlog(t.Logf), repeatLog: logger.ToSlog(t.Logf), hubs: newRegistry(nil, time.Now)}
	h := s.releasesHandler(root)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/releases/manifest.json", 200},
		{"HEAD", "/releases/manifest.json", 200},
		{"POST", "/releases/manifest.json", 405},
		{"GET", "/releases/", 404},
		{"GET", "/releases/sub", 404},
		{"GET", "/releases/.hidden", 404},
		{"GET", "/releases/key-link", 404},
		{"GET", "/releases/../relay.key", 404},
		{"GET", "/releases/%2e%2e/relay.key", 404},
		{"GET", "/releases/..%2frelay.key", 404},
		{"GET", "/relay.key", 404},
		{"GET", "/releases/nothere.gz", 404},
	} {
		req := httptest.NewRequest(c.method, "http://100.96.0.1"+c.path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.want)
		}
		if rec.Body.String() == "secret" {
			t.Errorf("%s %s served the relay's key", c.method, c.path)
		}
	}
}
