package logger

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func TestRateLimitedPassesOneLinePerIntervalAndCountsTheRest(t *testing.T) {
	var lines []string
	now := time.Unix(0, 0)
	f := rateLimited(func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) },
		10*time.Second, func() time.Time { return now })
	f("dial %d", 1)
	f("dial %d", 2)
	now = now.Add(5 * time.Second)
	f("dial %d", 3)
	now = now.Add(6 * time.Second)
	f("dial %d", 4)
	f("dial %d", 5)
	want := []string{"dial 1", "dial 4 (and 2 similar lines left out)"}
	if !slices.Equal(lines, want) {
		t.Fatalf("lines = %q, want %q", lines, want)
	}
}

func TestWithPrefixAndNil(t *testing.T) {
	var got string
	WithPrefix(func(format string, args ...any) { got = fmt.Sprintf(format, args...) }, "x: ")("%s", "y")
	if got != "x: y" {
		t.Fatalf("got %q", got)
	}
	WithPrefix(nil, "x: ")("nothing happens") // must not panic
	OrDiscard(nil)("nor here")
}
