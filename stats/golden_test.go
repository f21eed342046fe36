package stats

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden pages in testdata")

// hostile is a string with every character HTML escaping cares about.
const hostile = "<a href='x' title=\"y\">&amp; +1 \x00 ü \u2028 </script> {{.}}"

func hostilePage() page {
	t := map[string]string{}
	for k := range texts["en"] {
		t[k] = k + hostile
	}
	return page{
		Lang: "en" + hostile, T: t, ClockSet: false,
		Today:  countsView{"a" + hostile, "b" + hostile, "c" + hostile, "d" + hostile, "e" + hostile},
		Month:  countsView{"f" + hostile, "g" + hostile, "h" + hostile, "i" + hostile, "j" + hostile},
		Total:  countsView{"k" + hostile, "l" + hostile, "m" + hostile, "n" + hostile, "o" + hostile},
		Since:  "since" + hostile,
		Plan:   &planView{Of: "of" + hostile, Period: "period" + hostile, Projection: "proj" + hostile, UsedW: 12.5, ProjW: -0.5, LineX: 1e21, Over: true},
		Hours:  chart{Width: 600, Height: 180, BaseY: 160, Max: "max" + hostile, Bars: []bar{{Key: "k" + hostile, X: 4.3, W: 1e-7, UserY: 0, UserH: 148, OverY: 3, OverH: 0.1, Title: "t" + hostile, HasUser: true, HasOverhead: true}, {Key: "2", X: 5, HasUser: false, HasOverhead: true}, {Key: "3", HasUser: true}, {Key: "4"}}, Ticks: []tick{{X: 1.5, Label: "l" + hostile}, {X: 2}}},
		Days:   chart{Width: 600, Height: 180, BaseY: 160, Max: ""},
		Months: []monthRow{{"a" + hostile, "b" + hostile, "c" + hostile, "d" + hostile}, {}},
		Events: []eventRow{{"w" + hostile, "x" + hostile, "y" + hostile}, {}},
	}
}

// TestPageGolden holds the page to what html/template drew before the
// page became plain Go: the same bytes for the same data.
func TestPageGolden(t *testing.T) {
	now := time.Date(2026, 5, 1, 21, 10, 0, 0, time.UTC)
	r := New(Config{Now: func() time.Time { return now }, Location: time.UTC, PlanMB: 500})
	r.rec = SyntheticDay(now, time.UTC)
	r.rec.Events = append(r.rec.Events, Event{Time: now, Kind: "disconnected", Why: hostile}, Event{Kind: "odd<kind>", Why: ""})
	over := New(Config{Now: func() time.Time { return now }, Location: time.UTC, PlanMB: 1})
	over.rec = SyntheticDay(now, time.UTC)
	for name, p := range map[string]page{
		"synthetic-de": newPage(r.Report(), "de", time.UTC),
		"synthetic-en": newPage(r.Report(), "en", time.UTC),
		"over-en":      newPage(over.Report(), "en", time.UTC),
		"empty-en":     newPage(Report{}, "en", time.UTC),
		"empty-de":     newPage(Report{ClockSet: true}, "de", time.UTC),
		"hostile":      hostilePage(),
	} {
		got := renderPage(p)
		file := filepath.Join("testdata", name+".html")
		if *update {
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s: page differs from %s", name, file)
		}
	}
}
