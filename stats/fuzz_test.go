package stats

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReadRecord: whatever stats.json holds (damaged, cut off, hostile,
// from the future), the agent's recorder starts from it without a panic,
// reports, counts and writes it back.
func FuzzReadRecord(f *testing.F) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rec := SyntheticDay(now, time.UTC)
	if b, err := rec.Marshal(); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"hours":[{"key":"9999-01-01T00"}],"days":[{"key":"x"}]}`))
	f.Add([]byte(`{"version":1,"hours":[{"key":"b"},{"key":"a"}]}`))
	f.Add([]byte(`{"version":`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), FileName)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := New(Config{File: file, PlanMB: 500, Now: func() time.Time { return now }, Location: time.UTC})
		r.Add(Counts{UserIn: 1, OverheadOut: 2})
		r.Report()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadFile(file); err != nil {
			t.Fatalf("the record written back does not read: %v", err)
		}
	})
}
