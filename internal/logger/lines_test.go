package logger

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestNewLogfWritesWhatSlogWrites holds the agent's lines to the bytes
// slog's handlers write for the same message, so a hub's log reads the
// same as before (and as the relay's).
func TestNewLogfWritesWhatSlogWrites(t *testing.T) {
	msgs := []string{
		"vpn: peer up",
		"plain",
		"",
		"warning: cache file ignored: bad \"json\"",
		`a\b = c`,
		"key=value",
		"tab\tnew\nline\r\x00\x1f\x7f",
		"ümlaut größe",
		"bad utf8 \xff\xfe end",
		"line\u2028sep\u2029para",
		"nbsp\u00a0and\u200bzero width",
		"<script>&'+",
	}
	for _, format := range []string{"text", "json"} {
		for _, msg := range msgs {
			var want bytes.Buffer
			o := &slog.HandlerOptions{ReplaceAttr: dropTime}
			var h slog.Handler = slog.NewTextHandler(&want, o)
			if format == "json" {
				h = slog.NewJSONHandler(&want, o)
			}
			level := slog.LevelInfo
			if strings.HasPrefix(msg, "warning:") {
				level = slog.LevelWarn
			}
			slog.New(h).Log(t.Context(), level, msg)

			var got bytes.Buffer
			logf, err := NewLogf(&got, Options{Format: format, NoTime: true})
			if err != nil {
				t.Fatal(err)
			}
			logf("%s", msg)
			if got.String() != want.String() {
				t.Errorf("%s %q:\n got %q\nwant %q", format, msg, got.String(), want.String())
			}
		}
	}
}

func TestNewLogfStampsUTCMilliseconds(t *testing.T) {
	clock := func() time.Time { return time.Date(2025, 3, 1, 13, 4, 5, 678_900_000, time.FixedZone("CET", 3600)) }
	for format, want := range map[string]string{
		"text": "time=2025-03-01T12:04:05.678Z level=WARN msg=\"warning: x 1\"\n",
		"json": `{"time":"2025-03-01T12:04:05.678Z","level":"WARN","msg":"warning: x 1"}` + "\n",
	} {
		var got bytes.Buffer
		write := appendText
		if format == "json" {
			write = appendJSON
		}
		newLines(&got, false, write, clock)("warning: x %d", 1)
		if got.String() != want {
			t.Errorf("%s: got %q, want %q", format, got.String(), want)
		}
	}
	if _, err := NewLogf(nil, Options{Format: "xml"}); err == nil || !strings.Contains(err.Error(), "use text or json") {
		t.Errorf("format xml: %v", err)
	}
}
