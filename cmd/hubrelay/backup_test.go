package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// TestBackupRestoreIntoAFreshRelay: a backup of a relay with users, hubs
// and a next key restores into another relay's folder, whose config names
// its files otherwise: the store, the key and the next key arrive, a user
// logs in with their password, and the files that were there are kept
// aside.
func TestBackupRestoreIntoAFreshRelay(t *testing.T) {
	r := newTestRelay(t, "", "garage", "cellar")
	key, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(r.dir, "relay.key"))
	if err != nil {
		t.Fatal(err)
	}
	next, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(r.dir, "relay.key.next"))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "relay-backup.tar.gz")
	_, errOut, err := r.run("backup", archive)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, key.Public().String()) {
		t.Errorf("backup said %q, want the relay's public key named", errOut)
	}
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, _, err := r.run("backup", archive); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a backup over an existing file: %v, want refused", err)
	}

	// The fresh relay: its own names for store and key, a key of its own.
	f := &testRelay{t: t, dir: t.TempDir(), now: r.now}
	f.config = filepath.Join(f.dir, "other.toml")
	conf := "domain = \"hubs.example\"\nprivate_key_file = \"keys/k\"\nstore = \"data/hubs.sqlite\"\n"
	if err := os.WriteFile(f.config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(f.dir, "keys"), 0o700)
	os.MkdirAll(filepath.Join(f.dir, "data"), 0o700)
	own, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(f.dir, "keys/k"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := f.run("restore", archive)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, key.Public().String()) || !strings.Contains(out, "keys/k.before-restore-") {
		t.Errorf("restore said %q, want the key and the file kept aside", out)
	}
	if k, err := vpn.LoadPrivateKey(filepath.Join(f.dir, "keys/k")); err != nil || k != key {
		t.Errorf("restored key: %v, want the backed-up one", err)
	}
	if k, err := vpn.LoadPrivateKey(filepath.Join(f.dir, "keys/k.next")); err != nil || k != next {
		t.Errorf("restored next key: %v, want the backed-up one", err)
	}
	kept, _ := filepath.Glob(filepath.Join(f.dir, "keys/k.before-restore-*"))
	if len(kept) != 1 {
		t.Fatalf("kept %v, want the fresh relay's own key put aside", kept)
	}
	if k, _ := vpn.LoadPrivateKey(kept[0]); k != own {
		t.Error("the key put aside is not the one that was there")
	}
	db, err := store.Open(context.Background(), filepath.Join(f.dir, "data/hubs.sqlite"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.CheckPassword(context.Background(), "alice", "correct horse battery"); err != nil {
		t.Errorf("alice cannot log in to the restored store: %v", err)
	}
	for _, h := range []string{"garage", "cellar"} {
		if _, err := db.HubByName(context.Background(), h); err != nil {
			t.Errorf("hub %s in the restored store: %v", h, err)
		}
	}
}

// TestRestoreRefusesWhileTheRelayRuns: the store's lock is held (as by a
// running relay): restore changes nothing.
func TestRestoreRefusesWhileTheRelayRuns(t *testing.T) {
	r := newTestRelay(t, "", "garage")
	if _, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(r.dir, "relay.key")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	r.ok("backup", archive)
	lock, err := store.LockStore(filepath.Join(r.dir, "relay.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	before := r.revision()
	if _, _, err := r.run("restore", archive); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("restore under a running relay: %v, want refused", err)
	}
	if kept, _ := filepath.Glob(filepath.Join(r.dir, "*.before-restore-*")); len(kept) != 0 {
		t.Errorf("files put aside although refused: %v", kept)
	}
	if r.revision() != before {
		t.Error("the store changed")
	}
}

// TestRestoreRefusesBadArchives: each damaged or hostile archive is
// refused with a reason, and the relay's files stay as they were.
func TestRestoreRefusesBadArchives(t *testing.T) {
	r := newTestRelay(t, "", "garage")
	if _, _, err := vpn.LoadOrCreatePrivateKey(filepath.Join(r.dir, "relay.key")); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "good.tar.gz")
	r.ok("backup", good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	members := readMembers(t, data)

	rebuild := func(edit func(ms []member) []member) []byte {
		ms := edit(append([]member(nil), members...))
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		tw := tar.NewWriter(zw)
		for _, m := range ms {
			tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o600, Size: int64(len(m.data)), Typeflag: tar.TypeReg})
			tw.Write(m.data)
		}
		tw.Close()
		zw.Close()
		return b.Bytes()
	}
	flip := func(name string) func([]member) []member {
		return func(ms []member) []member {
			for i := range ms {
				if ms[i].name == name {
					d := append([]byte(nil), ms[i].data...)
					d[len(d)/2] ^= 0xff
					ms[i].data = d
				}
			}
			return ms
		}
	}
	storeBefore, _ := os.ReadFile(filepath.Join(r.dir, "relay.db"))
	keyBefore, _ := os.ReadFile(filepath.Join(r.dir, "relay.key"))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"not gzip", []byte("hello"), "not gzip"},
		{"cut off", data[:len(data)*2/3], ""},
		{"store changed", rebuild(flip(backupStore)), "checksum"},
		{"key changed", rebuild(flip(backupKey)), "checksum"},
		{"a path outside", rebuild(func(ms []member) []member {
			return append(ms, member{"../../escape", []byte("x")})
		}), `"../../escape"`},
		{"manifest not first", rebuild(func(ms []member) []member { return append(ms[1:], ms[0]) }), "first member"},
		{"store missing", rebuild(func(ms []member) []member {
			out := ms[:0]
			for _, m := range ms {
				if m.name != backupStore {
					out = append(out, m)
				}
			}
			return out
		}), "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.tar.gz")
			os.WriteFile(p, tc.data, 0o600)
			_, _, err := r.run("restore", p)
			if err == nil || !strings.Contains(err.Error(), "not a usable backup") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore = %v, want refused with %q", err, tc.want)
			}
			if b, _ := os.ReadFile(filepath.Join(r.dir, "relay.db")); !bytes.Equal(b, storeBefore) {
				t.Error("the store changed")
			}
			if b, _ := os.ReadFile(filepath.Join(r.dir, "relay.key")); !bytes.Equal(b, keyBefore) {
				t.Error("the key changed")
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(r.dir), "escape")); err == nil {
				t.Error("a member was written outside the relay's folder")
			}
			if left, _ := filepath.Glob(filepath.Join(r.dir, ".restore-*")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

type member struct {
	name string
	data []byte
}

func readMembers(t *testing.T, data []byte) []member {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var ms []member
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		b.ReadFrom(tr)
		ms = append(ms, member{h.Name, b.Bytes()})
	}
	return ms
}

// FuzzReadBackup: whatever a file handed to restore holds, readBackup
// refuses it or extracts only the members its manifest names, inside its
// folder, without a panic.
func FuzzReadBackup(f *testing.F) {
	dir := f.TempDir()
	key := filepath.Join(dir, "k")
	os.WriteFile(key, []byte("a key\n"), 0o600)
	kd, _ := fileDigest(key)
	m := backupManifestFile{Format: backupFormat, Files: map[string]backupFile{backupStore: kd, backupKey: kd}}
	var good bytes.Buffer
	writeBackup(&good, m, []struct{ name, path string }{{backupStore, key}, {backupKey, key}})
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:good.Len()/2])
	f.Add([]byte("not gzip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := t.TempDir()
		m, err := readBackup(bytes.NewReader(data), out)
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			if _, ok := m.Files[e.Name()]; !ok && err == nil {
				t.Fatalf("extracted %q, which the manifest does not name", e.Name())
			}
			switch e.Name() {
			case backupStore, backupKey, backupKeyNext, backupKeyOld:
			default:
				if !strings.HasPrefix(e.Name(), ".") { // atomicfile's temporary names
					t.Fatalf("extracted %q, no member of a backup", e.Name())
				}
			}
		}
	})
}
