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

// A run rewrites the generated report and keeps what people wrote below
// it; a report without that part gains nothing.
func TestHandKeptSurvivesARun(t *testing.T) {
	old := "# Benchmarks\n\nold table\n\n" + handKeptHeading + "; not from this run)\n\n### a section\n\nnotes\n"
	got := "# Benchmarks\n\nnew table\n" + handKept(old)
	want := "# Benchmarks\n\nnew table\n\n" + handKeptHeading + "; not from this run)\n\n### a section\n\nnotes\n"
	if got != want {
		t.Errorf("report after a run:\n%q\nwant\n%q", got, want)
	}
	for _, none := range []string{"", "# Benchmarks\n\nold table\n", handKeptHeading + " at the very start, not after a line\n"} {
		if h := handKept(none); h != "" {
			t.Errorf("handKept(%q) = %q; want nothing", none, h)
		}
	}
}
