package e2e

import (
	"archive/tar"
	"compress/gzip"
	"debug/elf"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestARMAgentsUnderQEMU takes the armv7 and arm64 agents out of the CCU
// addon as scripts/addon.sh builds it, and runs each under qemu's user
// emulation (called directly: binfmt_misc may not be registered) against a
// real relay on loopback: the tunnel comes up and ccusim's WebUI page
// loads through the relay. What ships for a CCU3 (armv7) and a 64-bit
// RaspberryMatic (arm64) runs there.
func TestARMAgentsUnderQEMU(t *testing.T) {
	t.Parallel()
	qemu := map[string]string{
		"armv7": need(t, "to run the armv7 agent", "qemu-arm-static", "qemu-arm"),
		"arm64": need(t, "to run the arm64 agent", "qemu-aarch64-static", "qemu-aarch64"),
	}
	machine := map[string]elf.Machine{"armv7": elf.EM_ARM, "arm64": elf.EM_AARCH64}

	out := t.TempDir()
	buildPackage(t, "addon.sh", out, "armv7 arm64")
	agents := extractAddonAgents(t, filepath.Join(out, "hubtunnel-"+packageVersion+".tgz"), t.TempDir())

	for _, arch := range []string{"armv7", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			t.Parallel()
			path := agents[arch]
			if path == "" {
				t.Fatalf("the addon has no hubtunnel-%s", arch)
			}
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != machine[arch] {
				t.Fatalf("hubtunnel-%s is built for %v, want %v", arch, f.Machine, machine[arch])
			}
			f.Close()
			if v := strings.TrimSpace(run(t, qemu[arch], path, "version")); v != packageVersion {
				t.Errorf("hubtunnel-%s version under qemu says %q, want %q", arch, v, packageVersion)
			}

			s := newHub(t, setupOpts{})
			s.startAgent(agentOpts{command: []string{qemu[arch], path}})
			// Emulated, the agent starts and handshakes several times slower.
			st := s.waitConnected(90 * time.Second)
			if st.Version != packageVersion {
				t.Errorf("the connected agent reports version %q, want %q", st.Version, packageVersion)
			}
			s.mustGetWebUI()
		})
	}
}

// extractAddonAgents unpacks the agent binaries (hubtunnel/bin/hubtunnel-ARCH)
// of the addon archive tgz into dir and returns their paths by ARCH.
func extractAddonAgents(t *testing.T, tgz, dir string) map[string]string {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	paths := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return paths
		}
		if err != nil {
			t.Fatalf("%s: %v", tgz, err)
		}
		arch, ok := strings.CutPrefix(h.Name, "hubtunnel/bin/hubtunnel-")
		if !ok || h.Typeflag != tar.TypeReg || strings.ContainsAny(arch, "/.") {
			continue
		}
		p := filepath.Join(dir, "hubtunnel-"+arch)
		w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, io.LimitReader(tr, 64<<20)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		paths[arch] = p
	}
}
