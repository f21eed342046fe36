// Package config loads hubtunnel's TOML files strictly: an unknown key, a
// value of the wrong type or a value its owner rejects is an error naming the
// file, the line and the key, so a process never starts half-configured.
//
// It only reads and reports. Defaults and meaning belong to the packages that
// own the settings (agent, relay), in their Validate methods.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Validator is implemented by config structs. Validate fills in defaults and
// checks values; it reports a bad value as a *KeyError.
type Validator interface {
	Validate() error
}

// KeyError is a bad value for one key, e.g. Key "targets.ports.2001".
type KeyError struct {
	Key string
	Err error
}

func (e *KeyError) Error() string { return fmt.Sprintf("%s: %v", e.Key, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// Errorf returns a *KeyError for key.
func Errorf(key, format string, args ...any) error {
	return &KeyError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Load decodes the TOML file at path into v and validates it.
func Load(path string, v Validator) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, v)
}

// Parse is Load for a file already read; name is used in messages.
func Parse(name string, data []byte, v Validator) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if pe.LastKey != "" {
				msg = pe.LastKey + ": " + msg
			}
			return fmt.Errorf("config: %s:%d: %s", name, errorLine(data, pe.Position), msg)
		}
		if line, key, msg, ok := typeError(err.Error()); ok {
			return fmt.Errorf("config: %s:%s: %s: %s", name, line, key, msg)
		}
		return fmt.Errorf("config: %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return fmt.Errorf("config: %s:%d: unknown key %q", name, lineOf(data, k), k)
	}
	if err := v.Validate(); err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			if line := lineOf(data, ke.Key); line > 0 {
				return fmt.Errorf("config: %s:%d: %w", name, line, err)
			}
		}
		return fmt.Errorf("config: %s: %w", name, err)
	}
	return nil
}

// typeError takes apart the toml package's type errors, which are not
// ParseErrors: `toml: line N (last key "KEY"): MESSAGE`, on one line.
// (Parsed by hand: regexp's matcher cost the agent 45 KB.)
func typeError(s string) (line, key, msg string, ok bool) {
	rest, ok := strings.CutPrefix(s, "toml: line ")
	if !ok {
		return "", "", "", false
	}
	n := 0
	for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
		n++
	}
	line, rest = rest[:n], rest[n:]
	rest, ok = strings.CutPrefix(rest, ` (last key "`)
	if n == 0 || !ok {
		return "", "", "", false
	}
	key, msg, ok = strings.Cut(rest, `"): `)
	if !ok || strings.Contains(key, `"`) || strings.Contains(msg, "\n") {
		return "", "", "", false
	}
	return line, key, msg, true
}

// errorLine is the line a parse error is on, as a person reads the file.
// The parser counts an error at a line's end (an unclosed "[targets")
// as on the next line, where the newline took it; the error's byte offset
// says which line it is.
func errorLine(data []byte, pos toml.Position) int {
	if pos.Start <= 0 || pos.Start > len(data) {
		return pos.Line
	}
	return 1 + bytes.Count(data[:pos.Start], []byte("\n"))
}

// lineOf finds the line that sets a dotted key such as "targets.ports.2001",
// following [table] headers. An element of an array of tables is named with
// its index, as in "hub[1].public_key" for the second [[hub]]. It returns 0
// when the key is not written out literally (then the message has no line).
func lineOf(data []byte, key string) int {
	table := ""
	seen := map[string]int{} // [[array]] headers met so far
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			h := line
			if i := strings.Index(h, "#"); i >= 0 {
				h = strings.TrimSpace(h[:i])
			}
			array := strings.HasPrefix(h, "[[")
			table = unquote(strings.Trim(h, "[] \t"))
			if array {
				seen[table]++
				table = fmt.Sprintf("%s[%d]", table, seen[table]-1)
			}
			if table == key {
				return n
			}
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			continue
		}
		k := unquote(strings.TrimSpace(line[:eq]))
		if table != "" {
			k = table + "." + k
		}
		// The toml package names undecoded keys without an index.
		if k == key || withoutIndexes(k) == key {
			return n
		}
	}
	return 0
}

// withoutIndexes is k without its array indexes ("[2]").
func withoutIndexes(k string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(k, '[')
		if i < 0 {
			return b.String() + k
		}
		n := 1
		for i+n < len(k) && '0' <= k[i+n] && k[i+n] <= '9' {
			n++
		}
		if n > 1 && i+n < len(k) && k[i+n] == ']' {
			b.WriteString(k[:i])
			k = k[i+n+1:]
			continue
		}
		b.WriteString(k[:i+1])
		k = k[i+1:]
	}
}

func unquote(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// Duration parses a duration setting named key: def when s is empty, else
// a time.ParseDuration string between lo and hi, or a KeyError that says
// the range ("30m", not "30m0s").
func Duration(key, s string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	t, err := time.ParseDuration(s)
	if err != nil || t < lo || t > hi {
		return 0, Errorf(key, "%q: want a duration from %q to %q", s, shortDuration(lo), shortDuration(hi))
	}
	return t, nil
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	return s
}
