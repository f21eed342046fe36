package hubinfo

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The trees under testdata/hubs are the files of real systems; README.md
// there says where each one comes from.
func TestDetectAt(t *testing.T) {
	tests := []struct {
		dir, machine                        string
		kind, board, firmware, arch, osName string
	}{
		{"ccu2", "armv5tejl", "ccu2", "", "2.61.7", "armv5", ""},
		{"ccu3", "armv7l", "ccu3", "rpi3", "3.85.7", "armv7", ""},
		{"raspberrymatic-rpi3", "aarch64", "raspberrymatic", "Raspberry Pi 3 Model B Rev 1.2", "3.79.6.20241122", "arm64", "Buildroot 2024.08.2"},
		{"raspberrymatic-ova", "x86_64", "raspberrymatic", "ova", "3.79.6.20241122", "amd64", "Buildroot 2024.08.2"},
		{"raspberrymatic-oci", "x86_64", "raspberrymatic", "docker", "3.79.6.20241122", "amd64", "Buildroot 2024.08.2"},
		{"openccu-rpi4", "aarch64", "raspberrymatic", "Raspberry Pi 4 Model B Rev 1.4", "3.85.7.20251129", "arm64", ""},
		{"debmatic-rpi", "aarch64", "debmatic", "Raspberry Pi 3 Model B Plus Rev 1.3", "3.81.5.120", "arm64", "Debian GNU/Linux 12 (bookworm)"},
		{"pivccu-container", "aarch64", "pivccu", "Raspberry Pi 4 Model B Rev 1.4", "3.85.7", "arm64", ""},
		{"pivccu-host", "aarch64", "pivccu", "Raspberry Pi 4 Model B Rev 1.4", "3.85.7", "arm64", "Debian GNU/Linux 12 (bookworm)"},
		{"generic-debian", "x86_64", "generic", "QEMU Standard PC (i440FX + PIIX, 1996)", "", "amd64", "Debian GNU/Linux 12 (bookworm)"},
		{"generic-cpuinfo-only", "aarch64", "generic", "Raspberry Pi 3 Model B Rev 1.2", "", "arm64", ""},
		{"empty", "riscv64", "generic", "", "", "", ""},
		{"does-not-exist", "x86_64", "generic", "", "", "amd64", ""},
		{"garbage-binary-version", "armv7l", "generic", "", "", "armv7", ""},
		{"garbage-model-no-nul", "armv7l", "generic", "Raspberry Pi 3 Model B Rev 1.2", "", "armv7", ""},
		{"garbage-control-chars", "armv7l", "raspberrymatic", "[31mASUS Tinker Board", "", "armv7", ""},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			h := DetectAt(filepath.Join("testdata", "hubs", tt.dir), tt.machine)
			if h.Kind != tt.kind || h.Board != tt.board || h.Firmware != tt.firmware || h.Arch != tt.arch || h.OS != tt.osName || h.Machine != tt.machine {
				t.Errorf("DetectAt = %+v\nwant kind %q board %q firmware %q arch %q os %q", h, tt.kind, tt.board, tt.firmware, tt.arch, tt.osName)
			}
			if len(h.Evidence) == 0 {
				t.Errorf("no evidence for %s", h)
			}
			checkLine(t, h.String())
		})
	}
}

// What `hubtunnel hub` shows and the hello carries, for the common hubs.
func TestDetectAtString(t *testing.T) {
	tests := []struct{ dir, machine, want string }{
		{"raspberrymatic-rpi3", "aarch64", "raspberrymatic 3.79.6.20241122 (Raspberry Pi 3 Model B Rev 1.2, arm64)"},
		{"ccu2", "armv5tejl", "ccu2 2.61.7 (armv5)"},
		{"pivccu-host", "aarch64", "pivccu 3.85.7 (Raspberry Pi 4 Model B Rev 1.4, arm64)"},
		{"empty", "riscv64", "generic (riscv64)"},
		{"empty", "", "generic"},
	}
	for _, tt := range tests {
		if got := DetectAt(filepath.Join("testdata", "hubs", tt.dir), tt.machine).String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

func TestDetectAtEvidence(t *testing.T) {
	h := DetectAt(filepath.Join("testdata", "hubs", "raspberrymatic-rpi3"), "aarch64")
	want := []string{"/VERSION: PRODUCT=raspmatic_rpi3", "/proc/device-tree/model: Raspberry Pi 3 Model B Rev 1.2"}
	if strings.Join(h.Evidence, "\n") != strings.Join(want, "\n") {
		t.Errorf("Evidence = %q, want %q", h.Evidence, want)
	}
	h = DetectAt(filepath.Join("testdata", "hubs", "pivccu-host"), "aarch64")
	if len(h.Evidence) < 2 || h.Evidence[1] != "/var/lib/piVCCU3/rootfs/VERSION: VERSION=3.85.7" {
		t.Errorf("piVCCU host evidence = %q, want the container's VERSION second", h.Evidence)
	}
}

// A file larger than the read limit is looked at only up to the limit: a
// VERSION file that says what it is only after 64 KiB is not believed, and
// a megabyte device-tree model costs no more than 64 KiB.
func TestDetectAtHugeFiles(t *testing.T) {
	root := t.TempDir()
	pad := bytes.Repeat([]byte("# padding\n"), maxRead/10+1)
	write(t, root, "VERSION", append(pad, "VERSION=3.85.7\nPRODUCT=ccu3\nPLATFORM=rpi3\n"...))
	write(t, root, "proc/device-tree/model", bytes.Repeat([]byte("Raspberry Pi "), 1<<20/13))
	h := DetectAt(root, "armv7l")
	if h.Kind != KindGeneric || h.Firmware != "" {
		t.Errorf("huge /VERSION: %+v, want generic without firmware", h)
	}
	if len(h.Board) > maxField || !strings.HasPrefix(h.Board, "Raspberry Pi Raspberry Pi") {
		t.Errorf("huge model: Board = %q, want its first %d bytes", h.Board, maxField)
	}
	checkLine(t, h.String())
}

func TestArchOf(t *testing.T) {
	for machine, want := range map[string]string{
		"armv5tel": "armv5", "armv5tejl": "armv5", "armv6l": "armv6", "armv7l": "armv7", "armv8l": "armv7",
		"aarch64": "arm64", "arm64": "arm64", "i386": "386", "i486": "386", "i586": "386", "i686": "386",
		"x86_64": "amd64", "amd64": "amd64",
		"": "", "riscv64": "", "mips": "", "armv4l": "", "ppc64le": "", "AARCH64": "", " x86_64": "",
	} {
		if got := ArchOf(machine); got != want {
			t.Errorf("ArchOf(%q) = %q, want %q", machine, got, want)
		}
	}
}

// String stays one short printable line whatever the fields hold, and a
// long board name gives way before the arch does.
func TestHubStringSanitizes(t *testing.T) {
	tests := []struct {
		h    Hub
		want string
	}{
		{Hub{Kind: "ccu3", Firmware: "3.85.7\r\nX-Evil: 1", Board: "rpi3\x1b[2J", Arch: "armv7"}, "ccu3 3.85.7 X-Evil: 1 (rpi3 [2J, armv7)"},
		{Hub{Kind: "generic", Board: "Banana Pi\u00ae M2+", Arch: "armv7"}, "generic (Banana Pi M2+, armv7)"},
		{Hub{Kind: "generic", Machine: "riscv64"}, "generic (riscv64)"},
		{Hub{}, "unknown"},
	}
	for _, tt := range tests {
		if got := tt.h.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.h, got, tt.want)
		}
	}
	long := Hub{Kind: "raspberrymatic", Firmware: strings.Repeat("9", 100), Board: strings.Repeat("Board ", 50), Arch: "arm64", Machine: "aarch64"}
	s := long.String()
	checkLine(t, s)
	if !strings.HasSuffix(s, "..., arm64)") {
		t.Errorf("long hub: %q, want the board shortened and the arch kept", s)
	}
	evil := Hub{Kind: strings.Repeat("\x00k", 200), Firmware: strings.Repeat("\xff", 300), Board: strings.Repeat("é", 300), Arch: strings.Repeat("a", 300)}
	checkLine(t, evil.String())
}

func TestHubJSON(t *testing.T) {
	b, err := json.Marshal(Hub{Kind: "generic", Machine: "x86_64", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"kind":"generic","machine":"x86_64","arch":"amd64"}`; string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
}

func TestDetect(t *testing.T) {
	h := Detect()
	if h.Kind == "" || h.Machine == "" {
		t.Errorf("Detect() = %+v, want at least a kind and this machine's uname -m", h)
	}
	checkLine(t, h.String())
}

// checkLine fails unless s is at most 120 bytes of printable ASCII.
func checkLine(t *testing.T, s string) {
	t.Helper()
	if len(s) > maxHubBytes {
		t.Errorf("%q: %d bytes, want at most %d", s, len(s), maxHubBytes)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			t.Errorf("%q: byte %d is %#x, want printable ASCII", s, i, s[i])
			return
		}
	}
}

func write(t *testing.T, root, name string, b []byte) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
