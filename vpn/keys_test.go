package vpn

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if s := k.String(); strings.Contains(s, k.Base64()) || s != "(private key)" {
		t.Fatalf("PrivateKey.String shows the key: %q", s)
	}
	if _, err := ParsePrivateKey("not a key"); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("bad key error repeats the input: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "hub.key")
	k1, created, err := LoadOrCreatePrivateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	k2, created, err := LoadOrCreatePrivateKey(path)
	if err != nil || created || k1 != k2 {
		t.Fatalf("reload: %v %v", created, err)
	}
	os.Chmod(path, 0o644)
	if _, err := LoadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable key accepted: %v", err)
	}

	// The same public key as WireGuard's own tool, when it is installed.
	wg, err := exec.LookPath("wg")
	if err != nil {
		t.Skip("wg (wireguard-tools) not installed; key format checked against it in CI")
	}
	cmd := exec.Command(wg, "pubkey")
	cmd.Stdin = strings.NewReader(k.Base64() + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != k.Public().String() {
		t.Fatalf("wg pubkey = %s, ours = %s", got, k.Public())
	}
}
