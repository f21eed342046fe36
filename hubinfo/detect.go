package hubinfo

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Hub is what the agent knows about the box it runs on.
type Hub struct {
	Kind     string   `json:"kind"`               // "ccu2", "ccu3", "raspberrymatic", "debmatic", "pivccu", "generic"
	Board    string   `json:"board,omitempty"`    // hardware: e.g. "Raspberry Pi 3 Model B Rev 1.2", RaspberryMatic's platform/board name, "ova"/"lxc"/"docker" when that is what it is
	Firmware string   `json:"firmware,omitempty"` // the hub system's version, e.g. "3.79.6.20241122" (RaspberryMatic), "2.61.7" (CCU2); for generic Linux empty
	OS       string   `json:"os,omitempty"`       // os-release PRETTY_NAME when there is one
	Machine  string   `json:"machine"`            // uname -m as given
	Arch     string   `json:"arch,omitempty"`     // artifact key: "armv5", "armv6", "armv7", "arm64", "386", "amd64"; "" if unsupported
	Evidence []string `json:"evidence,omitempty"` // which files decided, e.g. "/VERSION: PRODUCT=raspmatic_rpi3" (human readable, for `hubtunnel hub`)
}

// The kinds of hub.
const (
	KindCCU2           = "ccu2"
	KindCCU3           = "ccu3"
	KindRaspberryMatic = "raspberrymatic"
	KindDebmatic       = "debmatic"
	KindPiVCCU         = "pivccu"
	KindGeneric        = "generic"
)

const (
	maxRead     = 64 << 10 // bytes read of any file; marker files are a few hundred
	maxField    = 64       // bytes kept of a board, OS or machine name
	maxVersion  = 40       // bytes kept of a firmware version
	maxHubBytes = 120      // String's limit: it goes into the agent's hello
)

// Detect describes the hub the agent runs on.
func Detect() Hub { return DetectAt("/", machine()) }

// DetectAt describes the hub whose filesystem is at root, with machine the
// uname -m of its kernel. root is a seam for tests, not a security boundary:
// symbolic links are followed as the kernel follows them.
//
// The checks, in order; the first that matches decides the Kind:
//
//  1. /VERSION (else /boot/VERSION) with PRODUCT=debmatic: debmatic.
//  2. The same with PRODUCT=raspmatic_*: raspberrymatic.
//  3. /etc/piVCCU3 or /etc/piVCCU is a directory: pivccu. Before 4, because
//     a piVCCU container's /VERSION is the CCU3 firmware's, unchanged.
//  4. PRODUCT=ccu3 (or ccu3-anything): ccu3.
//  5. Another PRODUCT with a PLATFORM: raspberrymatic (OpenCCU's files).
//  6. VERSION=2.* and no PRODUCT: ccu2.
//  7. Otherwise generic.
//
// It never fails: what cannot be read counts as absent.
func DetectAt(root, machine string) Hub {
	fs := rootFS(root)
	h := Hub{Kind: KindGeneric, Machine: printable(machine, maxField), Arch: ArchOf(machine)}
	h.OS = fs.osRelease()

	verPath := "/VERSION"
	ver, ok := fs.keyValues(verPath)
	if !ok {
		verPath = "/boot/VERSION"
		ver, _ = fs.keyValues(verPath)
	}
	product, platform, version := ver["PRODUCT"], ver["PLATFORM"], cleanVersion(ver["VERSION"])
	pivccu := fs.firstDir("/etc/piVCCU3", "/etc/piVCCU")
	decided := func(kind, why string) {
		h.Kind = kind
		h.Firmware = version
		h.Evidence = append(h.Evidence, why)
	}
	switch {
	case product == "debmatic":
		decided(KindDebmatic, verPath+": PRODUCT=debmatic")
	case strings.HasPrefix(product, "raspmatic_"):
		decided(KindRaspberryMatic, verPath+": PRODUCT="+product)
	case pivccu != "":
		decided(KindPiVCCU, pivccu+": piVCCU's directory")
		if version != "" { // in the container
			h.Evidence = append(h.Evidence, verPath+": VERSION="+version)
		} else { // on the host: the CCU runs in the container
			for _, p := range []string{"/var/lib/piVCCU3/rootfs/VERSION", "/var/lib/piVCCU/rootfs/boot/VERSION"} {
				if kv, ok := fs.keyValues(p); ok && cleanVersion(kv["VERSION"]) != "" {
					h.Firmware = cleanVersion(kv["VERSION"])
					h.Evidence = append(h.Evidence, p+": VERSION="+h.Firmware)
					break
				}
			}
		}
	case strings.HasPrefix(product, "ccu3"):
		decided(KindCCU3, verPath+": PRODUCT="+product)
	case product != "" && platform != "":
		decided(KindRaspberryMatic, verPath+": PRODUCT="+product+" PLATFORM="+platform+" (OpenCCU)")
	case product == "" && strings.HasPrefix(version, "2."):
		decided(KindCCU2, verPath+": VERSION="+version+" without PRODUCT")
	default:
		h.Evidence = append(h.Evidence, "no hub marker: /VERSION, /boot/VERSION, /etc/piVCCU3")
	}

	switch {
	case h.Kind == KindRaspberryMatic && virtualBoards[platform] != "":
		h.Board = virtualBoards[platform]
		h.Evidence = append(h.Evidence, verPath+": PLATFORM="+platform)
	default:
		var from string
		h.Board, from = fs.hardware()
		if from != "" {
			h.Evidence = append(h.Evidence, from+": "+h.Board)
		} else if (h.Kind == KindRaspberryMatic || h.Kind == KindCCU3) && platform != "" {
			h.Board = printable(platform, maxField)
			h.Evidence = append(h.Evidence, verPath+": PLATFORM="+platform)
		}
	}
	for i, e := range h.Evidence {
		h.Evidence[i] = printable(e, 2*maxField)
	}
	return h
}

// virtualBoards are RaspberryMatic's (and OpenCCU's) platforms whose
// hardware files describe a hypervisor or a container host, not the hub.
var virtualBoards = map[string]string{"ova": "ova", "lxc": "lxc", "oci": "docker"}

// ArchOf maps uname -m to the key of the agent build that runs there, or ""
// where there is none.
func ArchOf(machine string) string {
	switch machine {
	case "armv5tel", "armv5tejl":
		return "armv5"
	case "armv6l":
		return "armv6"
	case "armv7l", "armv8l": // armv8l: a 32-bit userland on a 64-bit CPU
		return "armv7"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "x86_64", "amd64":
		return "amd64"
	}
	return ""
}

// String is one line for logs and the agent's hello, at most 120 bytes of
// printable ASCII: "raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B
// Rev 1.2, arm64)". A long board name is shortened, never the arch.
func (h Hub) String() string {
	s := printable(h.Kind, maxField)
	if s == "" {
		s = "unknown"
	}
	if fw := printable(h.Firmware, maxVersion); fw != "" {
		s += " " + fw
	}
	arch := printable(h.Arch, 16)
	if arch == "" {
		arch = printable(h.Machine, 24) // say what is unsupported
	}
	board := printable(h.Board, maxField)
	if room := maxHubBytes - len(s) - len(" (, )") - len(arch); len(board) > room {
		board = strings.TrimSpace(board[:max(room-3, 0)]) + "..."
	}
	switch {
	case board != "" && arch != "":
		s += " (" + board + ", " + arch + ")"
	case board+arch != "":
		s += " (" + board + arch + ")"
	}
	if len(s) > maxHubBytes {
		s = s[:maxHubBytes-3] + "..."
	}
	return s
}

// rootFS reads hub files below a root directory.
type rootFS string

// read returns at most maxRead bytes from the start of the file at name (a
// slash-separated path below the root), or false if it cannot be read.
func (fs rootFS) read(name string) ([]byte, bool) {
	f, err := os.Open(filepath.Join(string(fs), filepath.FromSlash(name)))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRead))
	return b, err == nil
}

// keyValues parses KEY=VALUE lines (VERSION files, os-release) of the file
// at name; quotes around a value are removed, values are not yet cleaned.
func (fs rootFS) keyValues(name string) (map[string]string, bool) {
	b, ok := fs.read(name)
	if !ok {
		return nil, false
	}
	kv := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || kv[k] != "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		kv[k] = v
	}
	return kv, true
}

// firstDir returns the first of names that is a directory, or "".
func (fs rootFS) firstDir(names ...string) string {
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(string(fs), filepath.FromSlash(n))); err == nil && fi.IsDir() {
			return n
		}
	}
	return ""
}

// osRelease is the system's PRETTY_NAME (os-release(5): /etc/os-release,
// else /usr/lib/os-release), or its NAME.
func (fs rootFS) osRelease() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if kv, ok := fs.keyValues(p); ok {
			if s := printable(kv["PRETTY_NAME"], maxField); s != "" {
				return s
			}
			return printable(kv["NAME"], maxField)
		}
	}
	return ""
}

// hardware names the board and the file that named it, or "", "".
func (fs rootFS) hardware() (board, from string) {
	for _, p := range []string{"/proc/device-tree/model", "/sys/firmware/devicetree/base/model"} {
		if b, ok := fs.read(p); ok {
			if i := bytes.IndexByte(b, 0); i >= 0 { // a device-tree string ends in NUL
				b = b[:i]
			}
			if s := printable(string(b), maxField); s != "" {
				return s, p
			}
		}
	}
	if kv, ok := fs.colonValues("/proc/cpuinfo"); ok {
		for _, k := range []string{"Model", "Hardware"} {
			if s := printable(kv[k], maxField); s != "" {
				return s, "/proc/cpuinfo " + k
			}
		}
	}
	const dmi = "/sys/devices/virtual/dmi/id/"
	vendor, _ := fs.read(dmi + "sys_vendor")
	product, _ := fs.read(dmi + "product_name")
	if s := printable(string(vendor)+" "+string(product), maxField); s != "" {
		return s, dmi + "{sys_vendor,product_name}"
	}
	return "", ""
}

// colonValues parses the "Key<tabs>: value" lines of /proc/cpuinfo; the
// first line of a key wins.
func (fs rootFS) colonValues(name string) (map[string]string, bool) {
	b, ok := fs.read(name)
	if !ok {
		return nil, false
	}
	kv := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if k = strings.TrimSpace(k); ok && kv[k] == "" {
			kv[k] = strings.TrimSpace(v)
		}
	}
	return kv, true
}

// cleanVersion cleans a VERSION= value: printable, at most maxVersion bytes, no
// spaces (a version with spaces in it is not one).
func cleanVersion(s string) string {
	s = printable(s, maxVersion)
	if strings.ContainsRune(s, ' ') {
		return ""
	}
	return s
}

// printable keeps the printable ASCII of s, with each run of spaces,
// control characters and other bytes outside it turned into one space,
// trimmed and cut to at most n bytes.
func printable(s string, n int) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteByte(c)
	}
	return strings.TrimSpace(b.String()[:min(b.Len(), n)])
}
