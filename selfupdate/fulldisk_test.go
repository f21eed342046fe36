package selfupdate

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// tinyDisk mounts a 16 KiB tmpfs on dir (which must exist), so that a
// write there really fails, as on a hub whose flash is full. It needs root.
func tinyDisk(t *testing.T, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
}

// fill writes into dir until the disk is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	for range 64 { // 16 KiB is 4 pages
		if _, err := f.Write(page); errors.Is(err, syscall.ENOSPC) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("the tiny disk never filled up")
}

// TestFullStateFolderSavesNothingTruncated: when the state folder's disk
// is full, the journal, result and latest version are not saved empty or
// cut off: the write fails, the old file stays whole, and an install
// stops before it changes anything.
func TestFullStateFolderSavesNothingTruncated(t *testing.T) {
	h := newFakeHub(t, "0.1.0")
	tinyDisk(t, h.state)
	if err := WriteLatest(h.state, "0.1.0"); err != nil {
		t.Fatal(err)
	}
	fill(t, h.state)

	if err := WriteLatest(h.state, "0.2.0"); err == nil {
		t.Errorf("WriteLatest on a full disk reported success")
	}
	if got := readText(t, filepath.Join(h.state, LatestFile)); got != "0.1.0\n" {
		t.Errorf("%s = %q after a failed write, want the old \"0.1.0\\n\"", LatestFile, got)
	}

	r := h.apply(t, "0.2.0", "0.1.0", "0.2.0")
	if r.OK || !strings.Contains(r.Reason, "writing the update journal") || r.ReasonKind != "no-space" {
		t.Errorf("Apply with a full state folder: %+v, want it refused at the journal", r)
	}
	if got := readText(t, h.bin); got != "0.1.0" {
		t.Errorf("installed binary = %q, want the old one", got)
	}
	if _, err := os.Stat(filepath.Join(h.dir, "restarts")); err == nil {
		t.Errorf("the agent was restarted")
	}
	left, _ := os.ReadDir(h.state)
	for _, e := range left {
		if e.Name() != LatestFile && e.Name() != "filler" {
			t.Errorf("left in the state folder: %s", e.Name())
		}
	}
}

// TestFullBinaryFolderKeepsTheOldBinary: a new binary that does not fit
// next to the installed one is not put in place cut off; the installed
// binary stays as it was, and no half copy is left.
func TestFullBinaryFolderKeepsTheOldBinary(t *testing.T) {
	dir := t.TempDir()
	tinyDisk(t, dir)
	installed, newBin := filepath.Join(dir, "hubtunnel"), filepath.Join(t.TempDir(), "hubtunnel-0.2.0")
	if err := os.WriteFile(installed, []byte("0.1.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("new agent "), 64<<10/10) // 64 KiB: more than the disk holds
	if err := os.WriteFile(newBin, big, 0o755); err != nil {
		t.Fatal(err)
	}

	if err := replace(newBin, installed); err == nil {
		t.Errorf("replace onto a full disk reported success")
	}
	if got := readText(t, installed); got != "0.1.0" {
		t.Errorf("installed binary is %d bytes after a failed replace, want the old one", len(got))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.new")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}
