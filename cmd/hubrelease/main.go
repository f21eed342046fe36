// Command hubrelease makes and signs agent releases: the manifest the
// agents verify before they install anything.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/selfupdate"
	"github.com/hubtunnel/hubtunnel/version"
)

const usage = `usage:
  hubrelease keygen KEYFILE     write a new release signing key (mode 0600), print its public key
  hubrelease pubkey KEYFILE     print the public key of a signing key
  hubrelease sign --key KEYFILE --version V --dir DIR [--notes TEXT] [--min-version M]
                                sign the artifacts DIR/hubtunnel-V-linux-ARCH.gz into
                                DIR/manifest-V.json, and DIR/manifest.json unless DIR
                                already holds a newer release; --min-version M: agents
                                refuse to install any release older than M, even as an
                                explicit downgrade (agents older than this option cannot read such a
                                manifest: set it once the hubs run a version that knows it)
`

// errUsage is a sign command that does not fit usage.
var errUsage = errors.New("wrong arguments")

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "keygen":
		err = keygen(os.Args[2])
	case len(os.Args) == 3 && os.Args[1] == "pubkey":
		var k ed25519.PrivateKey
		if k, err = readKey(os.Args[2]); err == nil {
			fmt.Println(selfupdate.FormatPublicKey(k.Public().(ed25519.PublicKey)))
		}
	case len(os.Args) > 1 && os.Args[1] == "sign":
		err = sign(os.Args[2:])
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if errors.Is(err, errUsage) {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubrelease:", err)
		os.Exit(1)
	}
}

func keygen(path string) error {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err // never overwrite a signing key
	}
	if _, err := fmt.Fprintln(f, selfupdate.FormatPrivateKey(k)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(selfupdate.FormatPublicKey(k.Public().(ed25519.PublicKey)))
	return nil
}

func readKey(path string) (ed25519.PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return selfupdate.ParsePrivateKey(f)
}

func sign(args []string) error {
	var keyFile, v, dir, notes, minVersion string
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--key":
			keyFile = args[i+1]
		case "--version":
			v = args[i+1]
		case "--dir":
			dir = args[i+1]
		case "--notes":
			notes = args[i+1]
		case "--min-version":
			minVersion = args[i+1]
		default:
			return errUsage
		}
	}
	if keyFile == "" || v == "" || dir == "" || len(args)%2 != 0 {
		return errUsage
	}
	k, err := readKey(keyFile)
	if err != nil {
		return err
	}
	if !version.Valid(v) {
		return fmt.Errorf("version %q: want MAJOR.MINOR.PATCH", v)
	}
	if minVersion != "" {
		if c, err := version.Compare(minVersion, v); err != nil || c > 0 {
			return fmt.Errorf("--min-version %q: want MAJOR.MINOR.PATCH, at most %s", minVersion, v)
		}
	}
	m := selfupdate.Manifest{Version: v, Released: time.Now().UTC().Truncate(time.Second), Notes: notes, Artifacts: map[string]selfupdate.Artifact{}, MinVersion: minVersion}
	prefix := "hubtunnel-" + v + "-linux-"
	paths, _ := filepath.Glob(filepath.Join(dir, prefix+"*.gz"))
	sort.Strings(paths)
	for _, p := range paths {
		arch := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix), ".gz")
		size, sum, err := hashFile(p)
		if err != nil {
			return err
		}
		m.Artifacts[arch] = selfupdate.Artifact{URL: filepath.Base(p), Size: size, SHA256: sum}
	}
	if len(m.Artifacts) == 0 {
		return fmt.Errorf("no %s*.gz in %s", prefix, dir)
	}
	data, err := selfupdate.Sign(m, k)
	if err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, "manifest-"+v+".json"), data); err != nil {
		return err
	}
	fmt.Printf("signed %s: %d artifacts\n", v, len(m.Artifacts))
	// manifest.json names the newest release: do not let a rebuild of an
	// old one take that place.
	latest := filepath.Join(dir, "manifest.json")
	if old, err := os.ReadFile(latest); err == nil {
		if om, err := selfupdate.Open(old, []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}); err == nil {
			if c, err := version.Compare(v, om.Version); err == nil && c < 0 {
				fmt.Printf("manifest.json stays at %s\n", om.Version)
				return nil
			}
		}
	}
	return writeAtomic(latest, data)
}

// writeAtomic replaces a file a relay may be serving at this moment.
func writeAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o644)
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}
