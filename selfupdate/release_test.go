package selfupdate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for a downloaded agent: with
// SELFUPDATE_TEST_AGENT_VERSION set, "version" prints it.
func TestMain(m *testing.M) {
	if v := os.Getenv("SELFUPDATE_TEST_AGENT_VERSION"); v != "" && len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(v)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testKey(t *testing.T, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func testManifest(v string, artifacts map[string]Artifact) Manifest {
	if artifacts == nil {
		artifacts = map[string]Artifact{"armv7": {URL: "hubtunnel-" + v + "-armv7.gz", Size: 10, SHA256: strings.Repeat("ab", 32)}}
	}
	return Manifest{Version: v, Released: time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC), Artifacts: artifacts}
}

func TestSignOpen(t *testing.T) {
	k := testKey(t, 1)
	other := testKey(t, 2)
	data, err := Sign(testManifest("0.2.0", nil), k)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Open(data, []ed25519.PublicKey{other.Public().(ed25519.PublicKey), k.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatalf("Open with the right key among others: %v", err)
	}
	if m.Version != "0.2.0" || m.Artifacts["armv7"].Size != 10 {
		t.Errorf("Open = %+v", m)
	}

	var env signed
	json.Unmarshal(data, &env)
	reseal := func(payload, sig []byte) []byte {
		b, _ := json.Marshal(signed{Payload: payload, Signature: sig})
		return b
	}
	for name, c := range map[string]struct {
		data []byte
		keys []ed25519.PublicKey
		want string
	}{
		"wrong key":              {data, []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}, "signature does not match"},
		"no key":                 {data, nil, "no release key"},
		"payload edited":         {reseal(bytes.Replace(env.Payload, []byte("0.2.0"), []byte("9.2.0"), 1), env.Signature), nil, "signature does not match"},
		"signature cut":          {reseal(env.Payload, env.Signature[:63]), nil, "signature does not match"},
		"no signature":           {reseal(env.Payload, nil), nil, "signature does not match"},
		"not json":               {[]byte("<html>captive portal</html>"), nil, "not a signed manifest"},
		"empty":                  {nil, nil, "not a signed manifest"},
		"huge":                   {bytes.Repeat([]byte(" "), MaxManifest+1), nil, "too large"},
		"signed without context": {reseal(env.Payload, ed25519.Sign(k, env.Payload)), nil, "signature does not match"},
	} {
		keys := c.keys
		if keys == nil && name != "no key" {
			keys = []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
		}
		if _, err := Open(c.data, keys); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open error %v, want %q", name, err, c.want)
		}
	}
}

func TestSignRejectsBadManifests(t *testing.T) {
	k := testKey(t, 1)
	good := Artifact{URL: "a.gz", Size: 1, SHA256: strings.Repeat("0", 64)}
	for name, m := range map[string]Manifest{
		"dev version":  testManifest("dev", nil),
		"no artifacts": {Version: "0.2.0", Artifacts: map[string]Artifact{}},
		"unknown arch": testManifest("0.2.0", map[string]Artifact{"mips": good}),
		"zero size":    testManifest("0.2.0", map[string]Artifact{"amd64": {URL: "a", SHA256: good.SHA256}}),
		"huge size":    testManifest("0.2.0", map[string]Artifact{"amd64": {URL: "a", Size: MaxArtifact + 1, SHA256: good.SHA256}}),
		"short sha256": testManifest("0.2.0", map[string]Artifact{"amd64": {URL: "a", Size: 1, SHA256: "abcd"}}),
		"file url":     testManifest("0.2.0", map[string]Artifact{"amd64": {URL: "file:///etc/passwd", Size: 1, SHA256: good.SHA256}}),
		"empty url":    testManifest("0.2.0", map[string]Artifact{"amd64": {Size: 1, SHA256: good.SHA256}}),
	} {
		if _, err := Sign(m, k); err == nil {
			t.Errorf("%s: Sign accepted it", name)
		}
	}
}

// releaseServer serves a release folder like hubrelay does.
type releaseServer struct {
	dir  string
	srv  *httptest.Server
	key  ed25519.PrivateKey
	arch string
}

func newReleaseServer(t *testing.T) *releaseServer {
	rs := &releaseServer{dir: t.TempDir(), key: testKey(t, 7), arch: testArch(t)}
	rs.srv = httptest.NewServer(http.FileServer(http.Dir(rs.dir)))
	t.Cleanup(rs.srv.Close)
	return rs
}

// publish writes a release of version v whose binary for rs.arch is bin;
// edit may change the manifest before it is signed.
func (rs *releaseServer) publish(t *testing.T, v string, bin []byte, edit func(*Manifest)) {
	t.Helper()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(bin)
	zw.Close()
	name := "hubtunnel-" + v + "-linux-" + rs.arch + ".gz"
	if err := os.WriteFile(filepath.Join(rs.dir, name), gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(gz.Bytes())
	m := testManifest(v, map[string]Artifact{rs.arch: {URL: name, Size: int64(gz.Len()), SHA256: hex.EncodeToString(sum[:])}})
	if edit != nil {
		edit(&m)
	}
	data, err := Sign(m, rs.key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rs.dir, "manifest-"+v+".json"), data, 0o644)
	os.WriteFile(filepath.Join(rs.dir, "manifest.json"), data, 0o644)
}

func (rs *releaseServer) source(t *testing.T) *Source {
	u, _ := url.Parse(rs.srv.URL + "/")
	return &Source{URL: u, Keys: []ed25519.PublicKey{rs.key.Public().(ed25519.PublicKey)}}
}

func testArch(t *testing.T) string {
	switch runtime.GOARCH {
	case "amd64", "386", "arm64":
		return runtime.GOARCH
	case "arm":
		return "armv7"
	}
	t.Skipf("no artifact key for %s", runtime.GOARCH)
	return ""
}

func TestDownload(t *testing.T) {
	rs := newReleaseServer(t)
	bin := bytes.Repeat([]byte("agent binary "), 1000)
	rs.publish(t, "0.2.0", bin, nil)
	src := rs.source(t)
	ctx := context.Background()

	m, err := src.Manifest(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), DownloadFolder)
	path, sum, err := src.Download(ctx, m, rs.arch, dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, bin) {
		t.Errorf("downloaded binary differs from the release")
	}
	if want := sha256.Sum256(bin); sum != hex.EncodeToString(want[:]) {
		t.Errorf("Download's SHA-256 %s is not the binary's", sum)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("download folder mode %v, want 0700", fi.Mode().Perm())
	}
	if m2, err := src.Manifest(ctx, "0.2.0"); err != nil || m2.Version != "0.2.0" {
		t.Errorf("Manifest(0.2.0) = %v, %v", m2, err)
	}
	if _, err := src.Manifest(ctx, "0.9.0"); err == nil || !strings.Contains(err.Error(), "manifest-0.9.0.json: not found") ||
		Explain(err).Kind != "not-found" || !strings.HasSuffix(Explain(err).Detail, "manifest-0.9.0.json") {
		t.Errorf("Manifest(0.9.0): %v", err)
	}
	if _, _, err := src.Download(ctx, m, "armv5", dir); err == nil || !strings.Contains(err.Error(), "no build for armv5") {
		t.Errorf("Download for a missing arch: %v", err)
	}
	if _, _, err := src.Download(ctx, m, "", dir); err == nil || !strings.Contains(err.Error(), "unknown architecture") {
		t.Errorf("Download for an unknown arch: %v", err)
	}
}

func TestDownloadRejects(t *testing.T) {
	ctx := context.Background()
	bin := bytes.Repeat([]byte("agent binary "), 1000)
	for name, c := range map[string]struct {
		tamper func(rs *releaseServer)
		edit   func(*Manifest)
		want   string
	}{
		"tampered artifact": {tamper: func(rs *releaseServer) {
			p := filepath.Join(rs.dir, "hubtunnel-0.2.0-linux-"+rs.arch+".gz")
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, want: "SHA-256 does not match"},
		"truncated download": {tamper: func(rs *releaseServer) {
			p := filepath.Join(rs.dir, "hubtunnel-0.2.0-linux-"+rs.arch+".gz")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-10], 0o644)
		}, want: "the manifest says"},
		"longer than the manifest says": {tamper: func(rs *releaseServer) {
			p := filepath.Join(rs.dir, "hubtunnel-0.2.0-linux-"+rs.arch+".gz")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, 0), 0o644)
		}, want: "the manifest says"},
		"artifact missing": {tamper: func(rs *releaseServer) {
			os.Remove(filepath.Join(rs.dir, "hubtunnel-0.2.0-linux-"+rs.arch+".gz"))
		}, want: "not found"},
		"not gzip, but signed": {edit: func(m *Manifest) {
			a := m.Artifacts[testArch(t)]
			sum := sha256.Sum256([]byte("plain"))
			a.Size, a.SHA256, a.URL = 5, hex.EncodeToString(sum[:]), "plain"
			m.Artifacts[testArch(t)] = a
		}, tamper: func(rs *releaseServer) {
			os.WriteFile(filepath.Join(rs.dir, "plain"), []byte("plain"), 0o644)
		}, want: "unpack"},
	} {
		t.Run(name, func(t *testing.T) {
			rs := newReleaseServer(t)
			rs.publish(t, "0.2.0", bin, c.edit)
			if c.tamper != nil {
				c.tamper(rs)
			}
			src := rs.source(t)
			m, err := src.Manifest(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if _, _, err := src.Download(ctx, m, rs.arch, dir); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Download error %v, want %q", err, c.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("left in the download folder: %v", left)
			}
		})
	}
}

// TestDownloadFolderMustBeOurs: a download folder someone planted as a
// symbolic link, or owns, is refused before anything is written; one of
// ours with a loose mode is tightened to 0700.
func TestDownloadFolderMustBeOurs(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish(t, "0.2.0", []byte("agent"), nil)
	src := rs.source(t)
	ctx := context.Background()
	m, err := src.Manifest(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	base, elsewhere := t.TempDir(), t.TempDir()
	link := filepath.Join(base, DownloadFolder)
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Download(ctx, m, rs.arch, link); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Download into a planted symlink: %v", err)
	}
	if left, _ := os.ReadDir(elsewhere); len(left) != 0 {
		t.Errorf("written through the planted symlink: %v", left)
	}
	if err := PrivateDir(link); err == nil {
		t.Errorf("PrivateDir accepted a symlink")
	}

	loose := filepath.Join(base, "loose")
	os.Mkdir(loose, 0o777)
	os.Chmod(loose, 0o777)
	if _, _, err := src.Download(ctx, m, rs.arch, loose); err != nil {
		t.Errorf("Download into our own loose folder: %v", err)
	}
	if fi, _ := os.Stat(loose); fi.Mode().Perm() != 0o700 {
		t.Errorf("our loose folder is %v after Download, want 0700", fi.Mode().Perm())
	}

	if os.Geteuid() == 0 {
		theirs := filepath.Join(base, "theirs")
		os.Mkdir(theirs, 0o700)
		if err := os.Chown(theirs, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, _, err := src.Download(ctx, m, rs.arch, theirs); err == nil || !strings.Contains(err.Error(), "belongs to another user") {
			t.Errorf("Download into another user's folder: %v", err)
		}
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if _, _, err := src.Download(ctx, m, rs.arch, file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("Download into a file: %v", err)
	}
}

// TestMinVersion: the floor is signed with the rest, must not be above the
// release, and a manifest without one does not mention it (agents older
// than the field read it as before); the decoder stays strict about fields
// it does not know.
func TestMinVersion(t *testing.T) {
	k := testKey(t, 1)
	keys := []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
	m := testManifest("0.3.0", nil)
	m.MinVersion = "0.2.0"
	data, err := Sign(m, k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(data, keys); err != nil || got.MinVersion != "0.2.0" {
		t.Errorf("Open = %+v, %v", got, err)
	}
	var env signed
	json.Unmarshal(data, &env)
	lowered, _ := json.Marshal(signed{Payload: bytes.Replace(env.Payload, []byte(`"min_version": "0.2.0"`), []byte(`"min_version": "0.0.1"`), 1), Signature: env.Signature})
	if _, err := Open(lowered, keys); err == nil || !strings.Contains(err.Error(), "signature does not match") {
		t.Errorf("a floor lowered after signing: %v", err)
	}
	for _, bad := range []string{"0.4.0", "dev", "1"} {
		m.MinVersion = bad
		if _, err := Sign(m, k); err == nil || !strings.Contains(err.Error(), "min_version") {
			t.Errorf("Sign with min_version %q: %v", bad, err)
		}
	}
	data, _ = Sign(testManifest("0.3.0", nil), k)
	json.Unmarshal(data, &env)
	if bytes.Contains(env.Payload, []byte("min_version")) {
		t.Errorf("a manifest without a floor names one:\n%s", env.Payload)
	}
	unknown := bytes.Replace(env.Payload, []byte(`"version"`), []byte(`"max_version": "9.9.9", "version"`), 1)
	resigned, _ := json.Marshal(signed{Payload: unknown, Signature: ed25519.Sign(k, append([]byte(signContext), unknown...))})
	if _, err := Open(resigned, keys); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Errorf("a signed manifest with a field this agent does not know: %v, want it refused", err)
	}
}

func TestManifestSignedByAnotherKey(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish(t, "0.2.0", []byte("x"), nil)
	src := rs.source(t)
	src.Keys = []ed25519.PublicKey{testKey(t, 9).Public().(ed25519.PublicKey)}
	if _, err := src.Manifest(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "signature does not match") || Explain(err).Kind != "bad-signature" {
		t.Errorf("Manifest with a foreign signature: %v", err)
	}
}

func TestCheckBinary(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	arch := testArch(t)
	ctx := context.Background()
	t.Setenv("SELFUPDATE_TEST_AGENT_VERSION", "0.2.0")
	if err := CheckBinary(ctx, self, arch, "0.2.0"); err != nil {
		t.Errorf("CheckBinary(self): %v", err)
	}
	if err := CheckBinary(ctx, self, arch, "0.3.0"); err == nil || !strings.Contains(err.Error(), `says it is version "0.2.0"`) {
		t.Errorf("CheckBinary with the wrong version: %v", err)
	}
	other := "armv7"
	if arch == "armv7" {
		other = "amd64"
	}
	if err := CheckBinary(ctx, self, other, "0.2.0"); err == nil || !strings.Contains(err.Error(), "not for this hub ("+other+")") {
		t.Errorf("CheckBinary for %s: %v", other, err)
	}
	script := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(script, []byte("#!/bin/sh\necho 0.2.0\n"), 0o755)
	if err := CheckBinary(ctx, script, arch, "0.2.0"); err == nil || !strings.Contains(err.Error(), "not a Linux program") {
		t.Errorf("CheckBinary(shell script): %v", err)
	}
}

func TestCleanDownloads(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"hubtunnel-0.2.0-123.gz", "hubtunnel-0.2.0-456.new", "new_addon.tar.gz", "other.new"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	CleanDownloads(dir)
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if strings.Join(left, " ") != "new_addon.tar.gz other.new" {
		t.Errorf("left %v; want only what is not ours", left)
	}
}

func TestManifestFromNoServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, _ := url.Parse(srv.URL + "/releases/")
	srv.Close() // nothing listens there any more
	src := &Source{URL: u, Keys: []ed25519.PublicKey{testKey(t, 1).Public().(ed25519.PublicKey)}}
	_, err := src.Manifest(context.Background(), "")
	if err == nil || !strings.Contains(err.Error(), "connection refused (no release server there") || strings.Count(err.Error(), u.Host) != 1 ||
		Explain(err).Kind != "no-release-server" {
		t.Errorf("Manifest from a closed port: %v", err)
	}
}
