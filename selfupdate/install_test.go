package selfupdate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
)

// fakeHub is an installed "agent" whose binary is a text file naming its
// version, a restart command that counts restarts, and a status API that
// answers as the installed binary would after a restart: connected, unless
// the binary's text says "broken". The real agent, init script and relay
// are exercised in e2e/update_test.go.
type fakeHub struct {
	dir, bin, state string
	running         string // file: the version "running" since the last restart
	in              *Installer
}

func newFakeHub(t *testing.T, installed string) *fakeHub {
	h := &fakeHub{dir: t.TempDir()}
	h.bin = filepath.Join(h.dir, "bin", "hubtunnel")
	h.state = filepath.Join(h.dir, "state")
	os.MkdirAll(filepath.Dir(h.bin), 0o755)
	os.MkdirAll(h.state, 0o755)
	os.WriteFile(h.bin, []byte(installed), 0o755)
	h.running = filepath.Join(h.dir, "running")
	os.WriteFile(h.running, []byte(installed), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile(h.running)
		v, broken := strings.CutSuffix(string(b), " broken")
		state := "connected"
		if broken {
			state = "connecting"
		}
		json.NewEncoder(w).Encode(map[string]string{"version": v, "state": state, "last_error": "relay unreachable"})
	}))
	t.Cleanup(srv.Close)
	// The restart command copies the binary's text into "running", which
	// the status API reads: a restart is what makes a new version answer.
	h.in = &Installer{
		Binary:        h.bin,
		StateDir:      h.state,
		WorkDir:       filepath.Join(h.dir, "work", InstallFolder),
		Restart:       []string{"sh", "-c", `cp "$0" "$1" && echo restart >> "$2"`, h.bin, h.running, filepath.Join(h.dir, "restarts")},
		API:           &localapi.Client{Addr: strings.TrimPrefix(srv.URL, "http://")},
		HealthTimeout: 3 * time.Second,
		Logf:          t.Logf,
	}
	return h
}

// apply installs a "binary" with text newText.
func (h *fakeHub) apply(t *testing.T, newText, from, to string) localapi.UpdateResult {
	t.Helper()
	newPath := filepath.Join(h.dir, "download.new")
	os.WriteFile(newPath, []byte(newText), 0o755)
	sum := sha256.Sum256([]byte(newText))
	return h.in.Apply(context.Background(), newPath, hex.EncodeToString(sum[:]), from, to)
}

// TestApplyInstallsOnlyTheCheckedBinary: the installer is given the hash
// of what was checked; a file swapped at the path since is not installed,
// and what it installs is its own copy, not the path it was given.
func TestApplyInstallsOnlyTheCheckedBinary(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	newPath := filepath.Join(h.dir, "download.new")
	checked := sha256.Sum256([]byte("0.2.0"))
	os.WriteFile(newPath, []byte("0.2.0 swapped"), 0o755) // swapped after the check
	r := h.in.Apply(context.Background(), newPath, hex.EncodeToString(checked[:]), "0.1.0", "0.2.0")
	if r.OK || !strings.Contains(r.Reason, "not the one that was checked") || !strings.Contains(r.Reason, "nothing was changed") {
		t.Errorf("Apply of a swapped file: %+v", r)
	}
	if got := readText(t, h.bin); got != "0.1.0" {
		t.Errorf("installed binary is %q after a swapped file", got)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "restarts")); err == nil {
		t.Errorf("the agent was restarted for a swapped file")
	}
	if r := h.in.Apply(context.Background(), newPath, "", "0.1.0", "0.2.0"); r.OK {
		t.Errorf("Apply without a hash installed it")
	}

	// Swapped once the installer has copied it (here: by the restart):
	// the copy, which is what was checked, is what runs.
	h.in.Restart = []string{"sh", "-c", `echo "0.2.0 swapped" > "$3"; cp "$0" "$1" && echo restart >> "$2"`, h.bin, h.running, filepath.Join(h.dir, "restarts"), newPath}
	os.WriteFile(newPath, []byte("0.2.0"), 0o755)
	if r := h.in.Apply(context.Background(), newPath, hex.EncodeToString(checked[:]), "0.1.0", "0.2.0"); !r.OK {
		t.Fatalf("Apply = %+v", r)
	}
	if got := readText(t, h.bin); got != "0.2.0" {
		t.Errorf("installed binary is %q", got)
	}
	if fi, err := os.Stat(h.in.WorkDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("installer's folder: %v, %v; want 0700", fi, err)
	}
	if left, _ := os.ReadDir(h.in.WorkDir); len(left) != 0 {
		t.Errorf("left in the installer's folder: %v", left)
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyInstallsAndKeepsPrevious(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	r := h.apply(t, "0.2.0", "0.1.0", "0.2.0")
	if !r.OK {
		t.Fatalf("Apply = %+v", r)
	}
	if got := readText(t, h.bin); got != "0.2.0" {
		t.Errorf("installed binary is %q", got)
	}
	if got := readText(t, h.bin+".prev"); got != "0.1.0" {
		t.Errorf("previous binary is %q", got)
	}
	if fi, _ := os.Stat(h.bin); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	saved, err := ReadResult(h.state)
	if err != nil || saved == nil || !saved.OK || saved.To != "0.2.0" || saved.Time.IsZero() {
		t.Errorf("ReadResult = %+v, %v", saved, err)
	}
	if _, err := os.Stat(filepath.Join(h.state, JournalFile)); !os.IsNotExist(err) {
		t.Errorf("journal left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "download.new")); !os.IsNotExist(err) {
		t.Errorf("download left behind: %v", err)
	}
}

func TestApplyRollsBackAnUnhealthyVersion(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	r := h.apply(t, "0.2.0 broken", "0.1.0", "0.2.0")
	if r.OK {
		t.Fatalf("Apply of a broken version succeeded: %+v", r)
	}
	if r.ReasonKind != "rolled-back" || !strings.HasPrefix(r.ReasonDetail, "the tunnel was not up") {
		t.Errorf("reason kind %q, detail %q; want rolled-back, and why", r.ReasonKind, r.ReasonDetail)
	}
	for _, want := range []string{"0.2.0 failed", "tunnel was not up within 3s", "tunnel connecting: relay unreachable", "rolled back to 0.1.0"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q lacks %q", r.Reason, want)
		}
	}
	if got := readText(t, h.bin); got != "0.1.0" {
		t.Errorf("installed binary after rollback is %q", got)
	}
	if got := readText(t, h.running); got != "0.1.0" {
		t.Errorf("running after rollback: %q", got)
	}
	if got := strings.Count(readText(t, filepath.Join(h.dir, "restarts")), "restart"); got != 2 {
		t.Errorf("%d restarts, want 2 (new, then previous)", got)
	}
	saved, _ := ReadResult(h.state)
	if saved == nil || saved.OK || saved.Reason != r.Reason {
		t.Errorf("saved result %+v", saved)
	}
}

func TestApplyFailingRestartRollsBack(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	h.in.Restart = []string{"sh", "-c", "exit 3"}
	r := h.apply(t, "0.2.0", "0.1.0", "0.2.0")
	if r.OK || !strings.Contains(r.Reason, "restarting the agent") {
		t.Errorf("Apply = %+v", r)
	}
	if got := readText(t, h.bin); got != "0.1.0" {
		t.Errorf("installed binary is %q", got)
	}
}

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	l, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); err != ErrBusy {
		t.Errorf("second Lock = %v, want ErrBusy", err)
	}
	l.Close()
	l2, err := Lock(dir)
	if err != nil {
		t.Errorf("Lock after release: %v", err)
	}
	l2.Close()
}

// interrupted leaves the state an installer killed after the swap leaves.
func interrupted(t *testing.T, h *fakeHub) {
	t.Helper()
	os.WriteFile(h.bin+".prev", []byte("0.1.0"), 0o755)
	os.WriteFile(h.bin, []byte("0.2.0"), 0o755)
	prev, _ := sha256File(h.bin + ".prev")
	cur, _ := sha256File(h.bin)
	j := journal{From: "0.1.0", To: "0.2.0", NewSHA: cur, PrevSHA: prev, PID: 999999}
	os.WriteFile(filepath.Join(h.state, JournalFile), j.encode(), 0o644)
}

func TestRecoverRollsBackAnInterruptedUpdate(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	interrupted(t, h)
	rec, err := Recover(h.state, h.bin)
	if err != nil || rec == nil || !rec.RolledBack || rec.To != "0.2.0" || rec.From != "0.1.0" {
		t.Fatalf("Recover = %+v, %v", rec, err)
	}
	if got := readText(t, h.bin); got != "0.1.0" {
		t.Errorf("binary after recovery is %q", got)
	}
	r, _ := ReadResult(h.state)
	if r == nil || r.OK || r.Reason != "the update to 0.2.0 was interrupted; rolled back to 0.1.0" || r.ReasonKind != "interrupted-rolled-back" {
		t.Errorf("result %+v", r)
	}
	if rec, err := Recover(h.state, h.bin); rec != nil || err != nil {
		t.Errorf("second Recover = %+v, %v", rec, err)
	}
}

func TestRecoverLeavesALiveInstallerAlone(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	interrupted(t, h)
	l, err := Lock(h.state)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec, err := Recover(h.state, h.bin); rec != nil || err != nil {
		t.Errorf("Recover while locked = %+v, %v", rec, err)
	}
	if got := readText(t, h.bin); got != "0.2.0" {
		t.Errorf("binary changed under a live installer: %q", got)
	}
}

func TestRecoverStaleJournal(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	interrupted(t, h)
	os.WriteFile(h.bin, []byte("0.1.5 installed by hand"), 0o755)
	rec, err := Recover(h.state, h.bin)
	if err != nil || rec == nil || rec.RolledBack {
		t.Fatalf("Recover = %+v, %v", rec, err)
	}
	if got := readText(t, h.bin); got != "0.1.5 installed by hand" {
		t.Errorf("binary is %q", got)
	}
	if _, err := os.Stat(filepath.Join(h.state, JournalFile)); !os.IsNotExist(err) {
		t.Errorf("journal not removed")
	}
}

func TestLatest(t *testing.T) {
	dir := t.TempDir()
	if got := ReadLatest(dir); got != "" {
		t.Errorf("ReadLatest on nothing = %q", got)
	}
	WriteLatest(dir, "0.2.0")
	fi1, _ := os.Stat(filepath.Join(dir, LatestFile))
	WriteLatest(dir, "0.2.0")
	fi2, _ := os.Stat(filepath.Join(dir, LatestFile))
	if !os.SameFile(fi1, fi2) {
		t.Errorf("unchanged version rewritten (the flash is spared only if it is not)")
	}
	if got := ReadLatest(dir); got != "0.2.0" {
		t.Errorf("ReadLatest = %q", got)
	}
}
