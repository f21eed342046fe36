package logger

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// NewLogf returns a Logf that writes each line to w as New's logger
// writes a message without fields, byte for byte: in the text format
//
//	time=2025-03-01T12:00:00.000Z level=INFO msg="vpn: peer up"
//
// and in JSON {"time":"…","level":"INFO","msg":"…"}; the level is WARN
// for a line starting with "warning:" (as FromSlog does), else INFO.
//
// It is the agent's logger: the agent logs only formatted lines, and
// log/slog, which New's logger needs, costs its binary 80 KB on armv7.
func NewLogf(w io.Writer, o Options) (Logf, error) {
	var write func(buf []byte, t time.Time, level, msg string) []byte
	switch o.Format {
	case "", "text":
		write = appendText
	case "json":
		write = appendJSON
	default:
		return nil, fmt.Errorf("log format %q: use text or json", o.Format)
	}
	return newLines(w, o.NoTime, write, time.Now), nil
}

func newLines(w io.Writer, noTime bool, write func([]byte, time.Time, string, string) []byte, clock func() time.Time) Logf {
	var mu sync.Mutex
	return func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		level := "INFO"
		if strings.HasPrefix(msg, "warning:") {
			level = "WARN"
		}
		var t time.Time
		if !noTime {
			t = clock()
		}
		buf := write(make([]byte, 0, 64+len(msg)), t, level, msg)
		mu.Lock()
		defer mu.Unlock()
		w.Write(buf)
	}
}

// appendText writes a line as slog's text handler does; a zero t is left
// out.
func appendText(buf []byte, t time.Time, level, msg string) []byte {
	if !t.IsZero() {
		buf = append(buf, "time="...)
		buf = t.UTC().AppendFormat(buf, rfc3339Millis)
		buf = append(buf, ' ')
	}
	buf = append(buf, "level="...)
	buf = append(buf, level...)
	buf = append(buf, " msg="...)
	if needsQuoting(msg) {
		buf = strconv.AppendQuote(buf, msg)
	} else {
		buf = append(buf, msg...)
	}
	return append(buf, '\n')
}

// needsQuoting reports whether slog's text handler quotes s: when it is
// empty or holds a space, '=', a character JSON escapes other than the
// backslash, or a rune that is not printable.
func needsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b != '\\' && (b == ' ' || b == '=' || !jsonSafe(b)) {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// jsonSafe reports whether the ASCII byte b goes into a JSON string as it
// is: all but the control characters, '"' and '\\'.
func jsonSafe(b byte) bool {
	return b >= 0x20 && b != '"' && b != '\\' && b < utf8.RuneSelf
}

// appendJSON writes a line as slog's JSON handler does; a zero t is left
// out.
func appendJSON(buf []byte, t time.Time, level, msg string) []byte {
	buf = append(buf, '{')
	if !t.IsZero() {
		buf = append(buf, `"time":"`...)
		buf = t.UTC().AppendFormat(buf, rfc3339Millis)
		buf = append(buf, `",`...)
	}
	buf = append(buf, `"level":"`...)
	buf = append(buf, level...)
	buf = append(buf, `","msg":"`...)
	buf = appendJSONString(buf, msg)
	return append(buf, "\"}\n"...)
}

// appendJSONString escapes s as slog's JSON handler does: '"', '\\' and
// the control characters, invalid UTF-8 as U+FFFD, and U+2028 and U+2029.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe(b) {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '\\', '"':
				buf = append(buf, '\\', b)
			case '\n':
				buf = append(buf, `\n`...)
			case '\r':
				buf = append(buf, `\r`...)
			case '\t':
				buf = append(buf, `\t`...)
			default:
				buf = append(buf, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(buf, s[start:]...)
}
