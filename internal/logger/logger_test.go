package logger

import (
	"fmt"
	"testing"
	"time"
)

func TestRateLimitedSaysWhatItLeftOut(t *testing.T) {
	var lines []string
	f := RateLimited(func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }, time.Hour)
	f("a %d", 1)
	f("a %d", 2)
	f("a %d", 3)
	if len(lines) != 1 || lines[0] != "a 1" {
		t.Fatalf("lines = %q, want only the first", lines)
	}
	g := RateLimited(func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }, -1)
	g("b")
	if lines[len(lines)-1] != "b" {
		t.Fatalf("an unlimited logger held a line back: %q", lines)
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
