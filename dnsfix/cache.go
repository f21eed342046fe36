package dnsfix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
)

// The cache file keeps, per name, the addresses that proved to be the
// relay (Resolver.Confirm), so that a hub that starts during a DNS outage
// still finds its relay. It is written only when a new address is
// confirmed (the hub's flash wears), atomically, and never trusted: a file
// that does not parse is ignored with a warning.
const (
	cacheVersion  = 1
	maxCacheFile  = 64 << 10
	maxCacheNames = 16
	maxCacheAddrs = 16
	cacheFileMode = 0o644
)

type cacheFile struct {
	Version int                    `json:"version"`
	Names   map[string]*cacheEntry `json:"names"`
}

// cacheEntry is the confirmed addresses of one name.
type cacheEntry struct {
	Addrs  []netip.Addr `json:"addrs"`
	Source Source       `json:"source"` // system or fallback
	Server string       `json:"server"`
	Since  time.Time    `json:"since"` // when this entry last changed
}

// loadCache reads the cache file. A missing file is an empty cache; a file
// that cannot be read or parsed is an error and the cache starts empty.
func loadCache(path string) (map[string]*cacheEntry, error) {
	m := map[string]*cacheEntry{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCacheFile+1))
	if err != nil {
		return m, err
	}
	if len(data) > maxCacheFile {
		return m, fmt.Errorf("larger than %d bytes", maxCacheFile)
	}
	var cf cacheFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cf); err != nil {
		return m, fmt.Errorf("not valid: %w", err)
	}
	if dec.More() {
		return m, errors.New("not valid: data after the end")
	}
	if cf.Version != cacheVersion {
		return m, fmt.Errorf("version %d, want %d", cf.Version, cacheVersion)
	}
	if len(cf.Names) > maxCacheNames {
		return m, fmt.Errorf("%d names, at most %d", len(cf.Names), maxCacheNames)
	}
	for name, e := range cf.Names {
		if n, err := canonicalName(name); err != nil || n != name {
			return m, fmt.Errorf("bad name %q", name)
		}
		if e == nil || len(e.Addrs) == 0 || len(e.Addrs) > maxCacheAddrs {
			return m, fmt.Errorf("%s: no addresses or too many", name)
		}
		for _, a := range e.Addrs {
			if c, _ := classify(a); !a.IsValid() || c == classUnusable {
				return m, fmt.Errorf("%s: unusable address %s", name, a)
			}
		}
		if e.Source != SourceSystem && e.Source != SourceFallback {
			return m, fmt.Errorf("%s: unknown source %q", name, e.Source)
		}
	}
	if cf.Names == nil {
		return m, nil
	}
	return cf.Names, nil
}

// writeCache replaces the cache file atomically (internal/atomicfile).
func writeCache(path string, names map[string]*cacheEntry) error {
	data, err := json.MarshalIndent(cacheFile{Version: cacheVersion, Names: names}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	return atomicfile.WriteFile(path, data, cacheFileMode)
}

// pruneCache keeps at most maxCacheNames names, dropping the oldest.
func pruneCache(names map[string]*cacheEntry) {
	for len(names) > maxCacheNames {
		oldest := ""
		for n, e := range names {
			if oldest == "" || e.Since.Before(names[oldest].Since) {
				oldest = n
			}
		}
		delete(names, oldest)
	}
}

// sameAddrs reports whether a and b hold the same addresses in any order.
func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}
