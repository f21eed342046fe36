package bench

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Target is a platform the agent ships for (BRIEF.md: armv6, armv7 on a
// CCU3, aarch64, 386, amd64).
type Target struct {
	Name          string
	GOARCH, GOARM string
}

// Targets are the addon's platforms.
var Targets = []Target{
	{"amd64", "amd64", ""},
	{"armv7", "arm", "7"},
	{"armv6", "arm", "6"},
	{"arm64", "arm64", ""},
	{"386", "386", ""},
}

// Size is one binary's size.
type Size struct {
	Target Target
	Binary string
	Bytes  int64
	Gzip   int64 // gzip -9 of the binary, about what it adds to a .tgz
}

// BuildTags returns the build tags of binary (a cmd/ name) in the module in
// root: those in cmd/NAME/build-tags, which every build path uses (the
// agent's leave out net/http's HTTP/2), or none.
func BuildTags(root, binary string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "cmd", binary, "build-tags"))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return strings.Join(strings.Fields(string(b)), ","), nil
}

// BuildSizes builds each binary (a cmd/ name) of the module in root for each
// target as a release would: static (CGO_ENABLED=0), -trimpath,
// -ldflags "-s -w" (stripped), into dir.
func BuildSizes(root, dir string, binaries []string, targets []Target) ([]Size, error) {
	var out []Size
	for _, t := range targets {
		for _, b := range binaries {
			path := filepath.Join(dir, b+"-"+t.Name)
			tags, err := BuildTags(root, b)
			if err != nil {
				return nil, err
			}
			cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w", "-o", path, "./cmd/"+b)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH, "GOARM="+t.GOARM)
			if msg, err := cmd.CombinedOutput(); err != nil {
				// Once more: a build cache shared with other go commands
				// running at the same time has been seen to fail once.
				retry := exec.Command(cmd.Args[0], cmd.Args[1:]...)
				retry.Dir, retry.Env = cmd.Dir, cmd.Env
				if msg2, err2 := retry.CombinedOutput(); err2 != nil {
					return nil, fmt.Errorf("bench: go build %s for %s: %v\n%s\n(first try: %s)", b, t.Name, err2, msg2, msg)
				}
			}
			fi, err := os.Stat(path)
			if err != nil {
				return nil, err
			}
			gz, err := gzipSize(path)
			if err != nil {
				return nil, err
			}
			out = append(out, Size{Target: t, Binary: b, Bytes: fi.Size(), Gzip: gz})
		}
	}
	return out, nil
}

func gzipSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(buf.Len()), nil
}

// AddonSize packs the addon with scripts/addon.sh around the hubtunnel
// binaries BuildSizes left in dir (hubtunnel-<target>) and returns the
// package's size.
func AddonSize(root, dir string, targets []Target) (int64, error) {
	var archs []string
	for _, t := range targets {
		archs = append(archs, t.Name)
	}
	out := filepath.Join(dir, "addon")
	cmd := exec.Command("bash", "scripts/addon.sh", "0.0.0-bench", out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BINDIR="+dir, "ARCHS="+strings.Join(archs, " "))
	if msg, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("bench: scripts/addon.sh: %v\n%s", err, msg)
	}
	fi, err := os.Stat(filepath.Join(out, "hubtunnel-0.0.0-bench.tgz"))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
