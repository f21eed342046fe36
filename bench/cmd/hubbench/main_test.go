package main

import (
	"slices"
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	names := []string{"size", "main", "peers"}
	if got, err := pick("-phases", "all", names); err != nil || got != nil {
		t.Errorf("all: %v, %v; want nil (every one)", got, err)
	}
	if got, err := pick("-phases", "peers,main", names); err != nil || !slices.Equal(got, []string{"peers", "main"}) {
		t.Errorf("peers,main: %v, %v", got, err)
	}
	for _, bad := range []string{"", "peer", "main,", "main,all"} {
		_, err := pick("-phases", bad, names)
		if err == nil || !strings.Contains(err.Error(), "the choices are all or size,main,peers") {
			t.Errorf("%q: error %v, want one that names the choices", bad, err)
		}
	}
}

// Asking for the base build's rows without a base build is refused before
// anything starts, not a run without them.
func TestBaseGroupNeedsBaseBin(t *testing.T) {
	err := runAll([]string{"-phases", "peers", "-peer-groups", "hubtunnel,base"})
	if err == nil || !strings.Contains(err.Error(), "-base-bin") {
		t.Fatalf("runAll: %v, want a refusal that names -base-bin", err)
	}
}
