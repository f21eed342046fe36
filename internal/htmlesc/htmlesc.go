// Package htmlesc escapes text and quoted attribute values for the
// agent's pages exactly as html/template does, which the agent does not
// use: text/template's reflect.Value.Method call keeps every exported
// method of every type in the binary (several MB on the CCU's flash).
package htmlesc

import (
	"io"
	"strings"
)

var escaper = strings.NewReplacer(
	"\x00", "\uFFFD",
	`"`, "&#34;",
	"&", "&amp;",
	"'", "&#39;",
	"+", "&#43;",
	"<", "&lt;",
	">", "&gt;",
)

// String returns s escaped.
func String(s string) string { return escaper.Replace(s) }

// Write writes s escaped to w.
func Write(w io.Writer, s string) (int, error) { return escaper.WriteString(w, s) }
