package selfupdate

import (
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
)

// Source is where releases come from: a folder of signed manifests and
// artifacts behind an HTTP URL (hubrelay serves one through the tunnel).
type Source struct {
	URL    *url.URL // the folder, ending in "/"
	Client *http.Client
	Keys   []ed25519.PublicKey // the pinned release keys
}

// Manifest fetches and verifies the manifest of version want, or of the
// newest release if want is "".
func (s *Source) Manifest(ctx context.Context, want string) (*Manifest, error) {
	name := "manifest.json"
	if want != "" {
		if !version.Valid(want) {
			return nil, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH", want)
		}
		name = "manifest-" + want + ".json"
	}
	u := s.URL.ResolveReference(&url.URL{Path: name})
	body, err := s.get(ctx, u, MaxManifest)
	if err != nil {
		return nil, err
	}
	m, err := Open(body, s.Keys)
	if err != nil {
		if localapi.WordsOf(err).Kind == "" {
			err = localapi.Said("bad-manifest", err.Error(), err)
		}
		return nil, err
	}
	if want != "" && m.Version != want {
		return nil, localapi.Said("bad-manifest", name, fmt.Errorf("%s names version %s", name, m.Version))
	}
	return m, nil
}

func (s *Source) get(ctx context.Context, u *url.URL, limit int64) ([]byte, error) {
	resp, err := s.do(ctx, u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, localapi.Said("fetch-failed", err.Error(), fmt.Errorf("fetch %s: %w", u.Redacted(), err))
	}
	if int64(len(b)) > limit {
		return nil, localapi.Said("bad-manifest", u.Redacted(), fmt.Errorf("fetch %s: larger than %d bytes", u.Redacted(), limit))
	}
	return b, nil
}

func (s *Source) do(ctx context.Context, u *url.URL) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return nil, err
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // it repeats the URL
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, localapi.Said("no-release-server", u.Redacted(), fmt.Errorf("fetch %s: connection refused (no release server there; a relay serves one with releases_dir)", u.Redacted()))
		}
		return nil, localapi.Said("fetch-failed", err.Error(), fmt.Errorf("fetch %s: %w", u.Redacted(), err))
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, localapi.Said("not-found", u.Redacted(), fmt.Errorf("fetch %s: not found", u.Redacted()))
		}
		return nil, localapi.Said("http-status", u.Redacted()+": "+resp.Status, fmt.Errorf("fetch %s: %s", u.Redacted(), resp.Status))
	}
	return resp, nil
}

// maxBinary bounds the unpacked agent binary.
const maxBinary = 128 << 20

// Download fetches m's artifact for arch into dir and returns the path of
// the unpacked, executable binary and its SHA-256 (hex), hashed as it was
// written. dir is the updater's own folder: PrivateDir makes or checks it
// (0700, ours, not a symbolic link), and every file in it is opened with
// O_EXCL|O_NOFOLLOW, so nobody else can plant or swap what is installed.
// The compressed file's size and SHA-256 must be the manifest's before
// anything is unpacked; on any error nothing is left in dir.
func (s *Source) Download(ctx context.Context, m *Manifest, arch, dir string) (path, sum string, err error) {
	a, ok := m.Artifacts[arch]
	if !ok {
		return "", "", localapi.Said("no-build", archOrUnknown(arch), fmt.Errorf("release %s has no build for %s", m.Version, archOrUnknown(arch)))
	}
	ref, err := url.Parse(a.URL)
	if err != nil {
		return "", "", err
	}
	u := s.URL.ResolveReference(ref)
	if err := PrivateDir(dir); err != nil {
		return "", "", err
	}
	gz, err := createExclusive(dir, "hubtunnel-"+m.Version+"-", ".gz")
	if err != nil {
		return "", "", err
	}
	defer func() {
		gz.Close()
		os.Remove(gz.Name())
	}()
	resp, err := s.do(ctx, u)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(gz, h), io.LimitReader(resp.Body, a.Size+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return "", "", localapi.Said("download-failed", err.Error(), fmt.Errorf("download %s: %w", u.Redacted(), err))
	case n != a.Size:
		return "", "", localapi.Said("download-corrupt", fmt.Sprintf("%d bytes, the manifest says %d", n, a.Size), fmt.Errorf("download %s: %d bytes, the manifest says %d", u.Redacted(), n, a.Size))
	case hex.EncodeToString(h.Sum(nil)) != strings.ToLower(a.SHA256):
		return "", "", localapi.Said("download-corrupt", "SHA-256", fmt.Errorf("download %s: SHA-256 does not match the manifest", u.Redacted()))
	}
	if _, err := gz.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	zr, err := gzip.NewReader(gz)
	if err != nil {
		return "", "", fmt.Errorf("unpack %s: %w", u.Redacted(), err)
	}
	bin, err := createExclusive(dir, "hubtunnel-"+m.Version+"-", ".new")
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			bin.Close()
			os.Remove(bin.Name())
		}
	}()
	bh := sha256.New()
	n, err = io.Copy(io.MultiWriter(bin, bh), io.LimitReader(zr, maxBinary+1))
	if err != nil {
		return "", "", fmt.Errorf("unpack %s: %w", u.Redacted(), err)
	}
	if n > maxBinary {
		return "", "", fmt.Errorf("unpack %s: larger than %d bytes", u.Redacted(), maxBinary)
	}
	if err := bin.Chmod(0o700); err != nil {
		return "", "", err
	}
	if err := bin.Sync(); err != nil {
		return "", "", err
	}
	return bin.Name(), hex.EncodeToString(bh.Sum(nil)), bin.Close()
}

// PrivateDir makes dir a folder only this process's user can use (0700),
// or checks that it is one: not a symbolic link, a folder, owned by us. A
// looser mode on our own folder is tightened; anything else is refused,
// since whoever else controls it could swap a verified download.
func PrivateDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("update folder %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("update folder %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("update folder %s: %w", dir, err)
	}
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("update folder %s is a symbolic link; refusing to download there (remove it)", dir)
	case !fi.IsDir():
		return fmt.Errorf("update folder %s is not a folder (remove it)", dir)
	case st == nil || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("update folder %s belongs to another user; refusing to download there (remove it)", dir)
	case fi.Mode().Perm() != 0o700:
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("update folder %s: %w", dir, err)
		}
	}
	return nil
}

// createExclusive creates a new file in dir named prefix, a random part
// and suffix, opened O_CREATE|O_EXCL|O_NOFOLLOW: never an existing file
// or a link someone planted.
func createExclusive(dir, prefix, suffix string) (*os.File, error) {
	for range 100 {
		var r [8]byte
		rand.Read(r[:])
		name := filepath.Join(dir, prefix+hex.EncodeToString(r[:])+suffix)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no new file name in %s", dir)
}

// CleanDownloads removes what downloads that were cut off (the agent
// killed mid-download, a power cut) left in dir, so they do not pile up on
// the hub's flash. Call it only while holding the update Lock: the
// installer works from a download in dir.
func CleanDownloads(dir string) {
	for _, pattern := range []string{"hubtunnel-*.gz", "hubtunnel-*.new"} {
		left, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, f := range left {
			os.Remove(f)
		}
	}
}

func archOrUnknown(arch string) string {
	if arch == "" {
		return "this hub's CPU (unknown architecture)"
	}
	return arch
}

// ELF header values an agent binary for each architecture must have: the
// class (1 = 32-bit, 2 = 64-bit) and the machine (EM_ARM 40, EM_AARCH64
// 183, EM_386 3, EM_X86_64 62). Read by hand: debug/elf would add its
// decompressors to the agent for two fields.
var elfMachines = map[string]struct {
	class   byte
	machine uint16
}{
	"armv5": {1, 40},
	"armv6": {1, 40},
	"armv7": {1, 40},
	"arm64": {2, 183},
	"386":   {1, 3},
	"amd64": {2, 62},
}

var elfNames = map[uint16]string{40: "ARM (32-bit)", 183: "ARM64", 3: "x86 (32-bit)", 62: "x86-64"}

// readELF returns a little-endian Linux executable's class and machine.
func readELF(path string) (class byte, machine uint16, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != "\x7fELF" {
		return 0, 0, errors.New("no ELF header")
	}
	const executable = 2
	if h[5] != 1 || binary.LittleEndian.Uint16(h[16:18]) != executable {
		return 0, 0, errors.New("not a little-endian executable")
	}
	return h[4], binary.LittleEndian.Uint16(h[18:20]), nil
}

// CheckBinary makes sure a downloaded agent is one this hub can run: a
// Linux executable for arch, which answers `version` with want.
func CheckBinary(ctx context.Context, path, arch, want string) error {
	class, machine, err := readELF(path)
	if err != nil {
		return localapi.Said("bad-binary", "", fmt.Errorf("the new binary is not a Linux program: %v", err))
	}
	if m, ok := elfMachines[arch]; !ok || m.class != class || m.machine != machine {
		name := elfNames[machine]
		if name == "" {
			name = fmt.Sprintf("machine %d", machine)
		}
		return localapi.Said("bad-binary", "", fmt.Errorf("the new binary is built for %s, not for this hub (%s)", name, archOrUnknown(arch)))
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return localapi.Said("bad-binary", "", fmt.Errorf("the new binary does not run here: %v", err))
	}
	if got := strings.TrimSpace(string(out)); got != want {
		return localapi.Said("bad-binary", "", fmt.Errorf("the new binary says it is version %q, the manifest %q", got, want))
	}
	return nil
}

// sha256File returns the hex SHA-256 of a file.
func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
