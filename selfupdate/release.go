package selfupdate

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
)

// A release is published as a signed manifest: manifest.json for the newest
// version and manifest-<version>.json for each one, next to the artifacts
// it names. The agent trusts a manifest only if it verifies against a
// pinned release key, and an artifact only if its size and SHA-256 are the
// manifest's.

// Manifest describes one release.
type Manifest struct {
	Version   string              `json:"version"`
	Released  time.Time           `json:"released"`
	Notes     string              `json:"notes,omitempty"`
	Artifacts map[string]Artifact `json:"artifacts"` // by hubinfo.Hub.Arch: "armv7", "arm64", ...
	// MinVersion, if set, is the oldest version that may still be
	// installed: the newest manifest's refuses every older release, even
	// as an explicit downgrade (a release with a security fix sets it).
	// The decoder stays strict (unknown fields are refused, so that a
	// signed manifest means exactly what its signer meant): agents before
	// this field refuse a manifest that carries it, and keep running what
	// they run. Left empty it is left out, so such agents read the
	// manifest as before: set a floor only once the hubs run a version
	// that knows it.
	MinVersion string `json:"min_version,omitempty"`
}

// Artifact is the agent binary for one architecture, gzip-compressed.
type Artifact struct {
	URL    string `json:"url"` // relative to the manifest's URL, or absolute
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex, of the compressed file
}

// MaxManifest bounds what is read of a manifest.
const MaxManifest = 64 << 10

// MaxArtifact bounds an artifact's size as a manifest may state it.
const MaxArtifact = 64 << 20

// signed is the file format: the manifest's exact bytes and an ed25519
// signature over signContext followed by them.
type signed struct {
	Payload   []byte `json:"payload"`   // base64 in JSON
	Signature []byte `json:"signature"` // base64 in JSON
}

// signContext keeps a release signature from being valid for anything
// else the same key might sign.
const signContext = "hubtunnel release manifest v1\n"

// Sign returns the signed manifest file for m.
func Sign(m Manifest, key ed25519.PrivateKey) ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	payload, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(key, append([]byte(signContext), payload...))
	return json.MarshalIndent(signed{Payload: payload, Signature: sig}, "", "  ")
}

// Open verifies a signed manifest file against the pinned keys and returns
// the manifest. Nothing of the payload is looked at before the signature
// verifies.
func Open(data []byte, keys []ed25519.PublicKey) (*Manifest, error) {
	if len(keys) == 0 {
		return nil, localapi.Said("no-key", "", errors.New("release manifest: no release key to check it with"))
	}
	if len(data) > MaxManifest {
		return nil, errors.New("release manifest: too large")
	}
	var s signed
	if err := json.Unmarshal(data, &s); err != nil || len(s.Payload) == 0 {
		return nil, errors.New("release manifest: not a signed manifest")
	}
	msg := append([]byte(signContext), s.Payload...)
	ok := false
	for _, k := range keys {
		if len(s.Signature) == ed25519.SignatureSize && ed25519.Verify(k, msg, s.Signature) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, localapi.Said("bad-signature", "", errors.New("release manifest: signature does not match the release key"))
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(s.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("release manifest: %v", err)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if !version.Valid(m.Version) {
		return fmt.Errorf("release manifest: version %q is not MAJOR.MINOR.PATCH", m.Version)
	}
	if m.MinVersion != "" {
		if c, err := version.Compare(m.MinVersion, m.Version); err != nil || c > 0 {
			return fmt.Errorf("release manifest: min_version %q is not a version at or below %s", m.MinVersion, m.Version)
		}
	}
	if len(m.Artifacts) == 0 {
		return errors.New("release manifest: no artifacts")
	}
	for arch, a := range m.Artifacts {
		if _, ok := archs[arch]; !ok {
			return fmt.Errorf("release manifest: unknown architecture %q", arch)
		}
		if a.Size <= 0 || a.Size > MaxArtifact {
			return fmt.Errorf("release manifest: %s: size %d out of range", arch, a.Size)
		}
		if h, err := hex.DecodeString(a.SHA256); err != nil || len(h) != sha256.Size {
			return fmt.Errorf("release manifest: %s: sha256 is not 64 hex digits", arch)
		}
		if u, err := url.Parse(a.URL); err != nil || a.URL == "" || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") {
			return fmt.Errorf("release manifest: %s: bad url %q", arch, a.URL)
		}
	}
	return nil
}

// archs are the artifact keys a manifest may use (hubinfo.Hub.Arch values).
var archs = map[string]struct{}{"armv5": {}, "armv6": {}, "armv7": {}, "arm64": {}, "386": {}, "amd64": {}}

// ParsePublicKey reads a release public key: 32 bytes in base64.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("release key: want 32 bytes in base64")
	}
	return ed25519.PublicKey(b), nil
}

// ParsePrivateKey reads a release signing key file: the 32-byte ed25519
// seed in base64 on one line.
func ParsePrivateKey(r io.Reader) (ed25519.PrivateKey, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1024))
	if err != nil {
		return nil, err
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("release signing key: want a 32-byte seed in base64")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// FormatPrivateKey is the file form ParsePrivateKey reads.
func FormatPrivateKey(k ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(k.Seed())
}

// FormatPublicKey is the form ParsePublicKey reads.
func FormatPublicKey(k ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(k)
}

// releaseKey is the built-in release key, stamped by `make release`
// (-X github.com/hubtunnel/hubtunnel/selfupdate.releaseKey=...): each
// release trusts the key that signed it. Empty in development builds,
// which update only with [update] public_key set.
var releaseKey string

// BuiltinKey returns the release key built into this binary, if any.
func BuiltinKey() (ed25519.PublicKey, bool) {
	k, err := ParsePublicKey(releaseKey)
	return k, err == nil
}

// Explain is an update error as Words: its text, its kind (one of
// localapi.Kinds) and detail. A full disk is "no-space" wherever it
// happened; another busy update is "busy".
func Explain(err error) localapi.Words {
	w := localapi.WordsOf(err)
	switch {
	case errors.Is(err, syscall.ENOSPC):
		w.Kind, w.Detail = "no-space", err.Error()
	case errors.Is(err, localapi.ErrBusy):
		w.Kind, w.Detail = "busy", ""
	}
	return w
}
