package ccusim

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxScriptBytes bounds a script request body.
const maxScriptBytes = 1 << 20

// scriptHandler serves the script engine port (ReGaHss on a CCU):
// POST /tclrega.exe and /rega.exe. sessions are the WebUI's logins, which
// system.GetSessionVarStr reads.
func scriptHandler(sessions *sessions) http.Handler {
	mux := http.NewServeMux()
	serve := func(w http.ResponseWriter, r *http.Request) { serveScript(w, r, sessions) }
	mux.HandleFunc("POST /tclrega.exe", serve)
	mux.HandleFunc("POST /rega.exe", serve)
	return mux
}

// serveScript runs the body as a HomeMatic script and answers like ReGaHss:
// the script's output, then an <xml> trailer.
func serveScript(w http.ResponseWriter, r *http.Request, sessions *sessions) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxScriptBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "script too large", http.StatusRequestEntityTooLarge)
		}
		return
	}
	var b bytes.Buffer
	b.WriteString(runScript(string(src), sessions.varStr))
	b.WriteString("<xml><exec>")
	xml.EscapeText(&b, []byte(r.URL.Path))
	b.WriteString("</exec><sessionId></sessionId><httpUserAgent>")
	xml.EscapeText(&b, []byte(r.UserAgent()))
	b.WriteString("</httpUserAgent></xml>")
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
}

// runScript runs the subset of HomeMatic script the simulator knows and
// returns its output. Only Write(…) and WriteLine(…) statements do
// anything; their argument is one string literal ('…' or "…", no escapes)
// or several joined with the concatenation operator #, where a call
// system.GetSessionVarStr('<id>') stands for what sessionVar says of the
// WebUI session id (what the CCU's addon pages check a sid with: empty
// for no live session). WriteLine adds "\n". Everything else — other
// statements, "!" comments to the end of the line, string literals
// elsewhere — is skipped, never an error.
func runScript(src string, sessionVar func(id string) string) string {
	var out strings.Builder
	s := scanner{src: src, sessionVar: sessionVar}
	for !s.done() {
		c := s.src[s.pos]
		switch {
		case c == '!':
			s.skipLine()
		case c == '"' || c == '\'':
			s.stringLit()
		case isIdentStart(c):
			// A name after a dot is a method (obj.Write), not the statement.
			method := s.pos > 0 && s.src[s.pos-1] == '.'
			id := s.ident()
			if method || id != "Write" && id != "WriteLine" {
				continue
			}
			arg, ok := s.writeArg(id == "WriteLine")
			if !ok {
				continue
			}
			out.WriteString(arg)
			if id == "WriteLine" {
				out.WriteString("\n")
			}
		default:
			s.pos++
		}
	}
	return out.String()
}

type scanner struct {
	src        string
	pos        int
	sessionVar func(id string) string // nil: no sessions
}

func (s *scanner) done() bool { return s.pos >= len(s.src) }

func (s *scanner) skipSpace() {
	for !s.done() && strings.IndexByte(" \t\r\n", s.src[s.pos]) >= 0 {
		s.pos++
	}
}

func (s *scanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i + 1
	} else {
		s.pos = len(s.src)
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// ident reads an identifier; dotted names (dom.GetObject) are one.
func (s *scanner) ident() string {
	start := s.pos
	for !s.done() {
		c := s.src[s.pos]
		if !isIdentStart(c) && !('0' <= c && c <= '9') && c != '.' {
			break
		}
		s.pos++
	}
	return s.src[start:s.pos]
}

// stringLit reads a string literal at pos. An unterminated one runs to the
// end of the script.
func (s *scanner) stringLit() (string, bool) {
	quote := s.src[s.pos]
	end := strings.IndexByte(s.src[s.pos+1:], quote)
	if end < 0 {
		s.pos = len(s.src)
		return "", false
	}
	lit := s.src[s.pos+1 : s.pos+1+end]
	s.pos += end + 2
	return lit, true
}

// writeArg reads `( "a" # 'b' … )` after Write or WriteLine; WriteLine may
// have no argument. It reports false, having consumed what it read, when
// the call is not of that form.
func (s *scanner) writeArg(allowEmpty bool) (string, bool) {
	s.skipSpace()
	if s.done() || s.src[s.pos] != '(' {
		return "", false
	}
	s.pos++
	s.skipSpace()
	if allowEmpty && !s.done() && s.src[s.pos] == ')' {
		s.pos++
		return "", true
	}
	var arg strings.Builder
	for {
		if s.done() {
			return "", false
		}
		var lit string
		var ok bool
		switch c := s.src[s.pos]; {
		case c == '"' || c == '\'':
			lit, ok = s.stringLit()
		case isIdentStart(c) && s.ident() == "system.GetSessionVarStr":
			lit, ok = s.sessionVarStr()
		}
		if !ok {
			return "", false
		}
		arg.WriteString(lit)
		s.skipSpace()
		if s.done() {
			return "", false
		}
		switch s.src[s.pos] {
		case ')':
			s.pos++
			return arg.String(), true
		case '#':
			s.pos++
			s.skipSpace()
		default:
			return "", false
		}
	}
}

// sessionVarStr reads `( '<id>' )` after system.GetSessionVarStr and
// returns the session's value, "" for an id without a live session.
func (s *scanner) sessionVarStr() (string, bool) {
	s.skipSpace()
	if s.done() || s.src[s.pos] != '(' {
		return "", false
	}
	s.pos++
	s.skipSpace()
	if s.done() || (s.src[s.pos] != '"' && s.src[s.pos] != '\'') {
		return "", false
	}
	id, ok := s.stringLit()
	if !ok {
		return "", false
	}
	s.skipSpace()
	if s.done() || s.src[s.pos] != ')' {
		return "", false
	}
	s.pos++
	if s.sessionVar == nil {
		return "", true
	}
	return s.sessionVar(id), true
}
