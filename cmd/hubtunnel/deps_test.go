package main

import (
	"os/exec"
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
