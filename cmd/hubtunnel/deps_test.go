package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoTemplatePackage keeps text/template (and html/template) out of
// the agent: its reflect.Value.Method call turns off the linker's dead
// code elimination of methods, which cost the binary 3.1 MB on armv7.
// The panel and stats pages are drawn by plain Go.
func TestNoTemplatePackage(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "template") {
			t.Errorf("the agent imports %s", p)
		}
	}
}

// TestAgentLeavesOutWhatItDoesNotUse builds the agent as a release does
// (the tags in build-tags, -trimpath) and checks what the linker kept:
// net/http's HTTP/2 (460 KB on armv7; the agent serves plain HTTP on
// loopback and fetches through the tunnel, where HTTP/1.1 is all there is),
// log/slog's handlers (65 KB: the agent writes its lines with
// logger.NewLogf) and regexp's matcher (45 KB; gVisor's log package
// still compiles one expression, so regexp itself stays) and fmt's scanner
// (23 KB).
func TestAgentLeavesOutWhatItDoesNotUse(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	tags, err := os.ReadFile("build-tags")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hubtunnel")
	build := exec.Command(goCmd, "build", "-trimpath", "-tags", strings.Join(strings.Fields(string(tags)), ","), "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(goCmd, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	unwanted := map[string]string{
		"net/http.(*http2Framer)":    "HTTP/2 (is nethttpomithttp2 in build-tags?)",
		"log/slog.(*commonHandler)":  "log/slog's handlers",
		"fmt.(*ss).":                 "fmt's scanner",
		"regexp.(*Regexp).doExecute": "regexp's matcher",
		"text/template.":             "text/template",
		"html/template.":             "html/template",
	}
	found := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		for prefix := range unwanted {
			if strings.HasPrefix(f[2], prefix) && !found[prefix] {
				found[prefix] = true
				t.Errorf("the agent links %s again: %s", unwanted[prefix], f[2])
			}
		}
	}
}

// TestEveryAgentBuildUsesTheBuildTags checks that each place that builds
// the agent passes the tags in build-tags, so that what ships is what
// TestAgentLeavesOutWhatItDoesNotUse built.
func TestEveryAgentBuildUsesTheBuildTags(t *testing.T) {
	for file, use := range map[string]string{
		"../../Makefile":             "-tags '$(AGENT_TAGS)'",
		"../../scripts/addon.sh":     `-tags "$(cat cmd/hubtunnel/build-tags)"`,
		"../../scripts/release.sh":   `-tags "$(cat cmd/hubtunnel/build-tags)"`,
		"../../scripts/deb-agent.sh": `-tags "$(cat cmd/hubtunnel/build-tags)"`,
		"../../bench/size.go":        "BuildTags(root, b)",
		"../../e2e/helpers_test.go":  "bench.BuildTags(",
		"../../e2e/update_test.go":   "bench.BuildTags(",
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), use) {
			t.Errorf("%s builds the agent without its build tags (%s)", file, use)
		}
	}
	mk, _ := os.ReadFile("../../Makefile")
	if !strings.Contains(string(mk), "AGENT_TAGS := $(shell cat cmd/hubtunnel/build-tags)") {
		t.Error("the Makefile does not take AGENT_TAGS from cmd/hubtunnel/build-tags")
	}
}
