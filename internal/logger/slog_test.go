package logger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewJSONLinesParseWithTheFields(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hub connected", Hub, "demo", Remote, "127.0.0.1:4242", Transport, "tls")
	l.Debug("not shown")
	l.Warn("store failed", Err, fmt.Errorf("disk full"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines (Info and up), got %q", lines)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("line 1 is no JSON object: %v: %s", err, lines[0])
	}
	for k, v := range map[string]any{"level": "INFO", "msg": "hub connected", "hub": "demo", "remote": "127.0.0.1:4242", "transport": "tls"} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if ts, _ := m["time"].(string); !strings.HasSuffix(ts, "Z") {
		t.Errorf("time %q is not RFC 3339 in UTC", ts)
	} else if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("time %q: %v", ts, err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &m); err != nil || m["level"] != "WARN" || m["err"] != "disk full" {
		t.Errorf("line 2 = %s (%v)", lines[1], err)
	}
}

func TestNewTextAndBadFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hub gone", Hub, "demo")
	if got := buf.String(); !strings.HasPrefix(got, "time=") || !strings.Contains(got, ` level=INFO msg="hub gone" hub=demo`) {
		t.Errorf("text line = %q", got)
	}
	buf.Reset()
	l, _ = New(&buf, Options{NoTime: true})
	l.Info("x")
	if got := buf.String(); got != "level=INFO msg=x\n" {
		t.Errorf("line without time = %q", got)
	}
	if _, err := New(&buf, Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("format xml: %v", err)
	}
}

func TestFromSlogKeepsTheLineAndWarns(t *testing.T) {
	var buf bytes.Buffer
	l, _ := New(&buf, Options{Format: "json"})
	f := FromSlog(l)
	f("vpn: peer %s up", "abc")
	f("warning: ignored %q", "cache")
	var got [][2]string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		got = append(got, [2]string{m["level"].(string), m["msg"].(string)})
	}
	want := [][2]string{{"INFO", "vpn: peer abc up"}, {"WARN", `warning: ignored "cache"`}}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestToSlogWritesTextLinesToALogf(t *testing.T) {
	var lines []string
	l := ToSlog(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	l.Info("hub connected", Hub, "a", Remote, "127.0.0.1:1")
	if want := []string{`level=INFO msg="hub connected" hub=a remote=127.0.0.1:1`}; !slices.Equal(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}
	ToSlog(nil).Info("nowhere") // must not panic
}

func TestLimitedPassesOneLinePerMessageAndIntervalAndCountsTheRest(t *testing.T) {
	var lines []string
	now := time.Unix(0, 0)
	l := limited(ToSlog(func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }),
		time.Second, func() time.Time { return now })
	hub := l.With(Hub, "a") // fields do not make a line another
	l.Info("stranger", Remote, "1")
	hub.Info("stranger", Remote, "2")
	l.Warn("limit hit", Port, 443) // another message: its own limit
	now = now.Add(500 * time.Millisecond)
	l.Info("stranger", Remote, "3")
	now = now.Add(600 * time.Millisecond)
	l.Info("stranger", Remote, "4")
	l.Warn("limit hit", Port, 443)
	want := []string{
		`level=INFO msg=stranger remote=1`,
		`level=WARN msg="limit hit" port=443`,
		`level=INFO msg=stranger remote=4 left_out=2`,
		`level=WARN msg="limit hit" port=443`,
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("lines =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
