package ccusim

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
)

// maxEchoBytes bounds a POST /echo body, which is held in memory.
const maxEchoBytes = 256 << 20

// webUI serves the WebUI port.
type webUI struct {
	name   string
	ifaces []*iface
	store  *store
	files  *os.Root // nil: no /files/
	counts *counts
	logins *sessions
}

func (u *webUI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.serveIndex)
	mux.HandleFunc("GET /api/devices", u.serveDevices)
	mux.HandleFunc("POST /echo", u.serveEcho)
	mux.HandleFunc("POST /login.htm", u.serveLogin)
	mux.HandleFunc("POST /logout.htm", u.serveLogout)
	mux.HandleFunc("GET "+CountsPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(u.counts.snapshot())
	})
	if u.files != nil {
		mux.Handle("GET /files/", http.StripPrefix("/files", http.FileServerFS(u.files.FS())))
	}
	return mux
}

var indexPage = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>HomeMatic WebUI</title>
</head>
<body>
<h1>{{.Name}}</h1>
<p>This is ccusim, a stand-in for a HomeMatic CCU's services, hub name <b>{{.Name}}</b>.</p>
{{range .Ifaces}}<h2>{{.Name}}</h2>
<table>
<tr><th>Channel</th><th>Type</th><th>Values</th></tr>
{{range .Channels}}<tr><td>{{.Address}}</td><td>{{.Type}}</td><td>{{range .Values}}{{.}} {{end}}</td></tr>
{{end}}</table>
{{end}}</body>
</html>
`))

type pageIface struct {
	Name     string
	Channels []pageChannel
}

type pageChannel struct {
	Address, Type string
	Values        []string
}

func (u *webUI) serveIndex(w http.ResponseWriter, r *http.Request) {
	data := struct {
		Name   string
		Ifaces []pageIface
	}{Name: u.name}
	for _, f := range u.ifaces {
		pi := pageIface{Name: f.name}
		for _, dev := range f.devices {
			for _, ch := range dev.children {
				vals := u.store.paramset(ch)
				pc := pageChannel{Address: ch.address, Type: dev.typ + " " + ch.typ}
				for _, p := range ch.params {
					if v, ok := vals[p.id]; ok {
						pc.Values = append(pc.Values, p.id+"="+formatValue(v))
					}
				}
				pi.Channels = append(pi.Channels, pc)
			}
		}
		data.Ifaces = append(data.Ifaces, pi)
	}
	var b bytes.Buffer
	if err := indexPage.Execute(&b, data); err != nil {
		http.Error(w, "page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

func formatValue(v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case bool:
		return strconv.FormatBool(v)
	case string:
		return strconv.Quote(v)
	}
	return "?"
}

// serveDevices answers GET /api/devices with the current values of every
// channel: {"BidCos-RF": {"NEQ0000002:1": {"STATE": false, …}, …}, …}.
func (u *webUI) serveDevices(w http.ResponseWriter, r *http.Request) {
	out := map[string]map[string]map[string]any{}
	for _, f := range u.ifaces {
		chans := map[string]map[string]any{}
		for _, dev := range f.devices {
			for _, ch := range dev.children {
				chans[ch.address] = u.store.paramset(ch)
			}
		}
		out[f.name] = chans
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

// serveEcho answers POST /echo with the request body. The body is read in
// full before the answer starts, so clients that send everything before
// reading cannot deadlock against it.
func (u *webUI) serveEcho(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= maxEchoBytes {
		b.Grow(int(r.ContentLength))
	}
	if _, err := b.ReadFrom(http.MaxBytesReader(w, r.Body, maxEchoBytes)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		}
		return
	}
	// Never reflect the client's content type: the echo is data, not a page.
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	io.Copy(w, &b)
}

// A CCU's WebUI hands each login a session id, which it passes to addon
// pages as ?sid=@XXXXXXXXXX@; the pages check it with the script engine's
// system.GetSessionVarStr('XXXXXXXXXX'), which writes the session's
// user record, or nothing for an id without a live session. The
// simulator's login is a test hook: POST /login.htm (any body: there are
// no passwords) answers 200 with a new sid, "@XXXXXXXXXX@", in plain
// text; POST /logout.htm?sid=… ends that session.

// maxSessions bounds the sessions a Sim keeps; a new login beyond it
// ends the oldest.
const maxSessions = 100

// sessions are a Sim's live WebUI logins.
type sessions struct {
	mu    sync.Mutex
	ids   map[string]string // bare 10-character id → GetSessionVarStr's value
	order []string          // ids, oldest first
}

// sessionAlphabet is what a CCU's session ids are made of.
const sessionAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// login starts a session and returns its sid as the WebUI passes it on,
// "@XXXXXXXXXX@".
func (s *sessions) login() string {
	var b [10]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = sessionAlphabet[int(b[i])%len(sessionAlphabet)]
	}
	id := string(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]string{}
	}
	if len(s.order) >= maxSessions {
		delete(s.ids, s.order[0])
		s.order = s.order[1:]
	}
	// What a CCU writes: user id, rights level, user name, and more.
	s.ids[id] = "1001;8;Admin;;;"
	s.order = append(s.order, id)
	return "@" + id + "@"
}

// logout ends the session of sid ("@XXXXXXXXXX@" or the bare id).
func (s *sessions) logout(sid string) {
	id := trimSid(sid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; !ok {
		return
	}
	delete(s.ids, id)
	for i, o := range s.order {
		if o == id {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// varStr is system.GetSessionVarStr: the session's value, "" for none.
func (s *sessions) varStr(id string) string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id]
}

func trimSid(sid string) string {
	if len(sid) == 12 && sid[0] == '@' && sid[11] == '@' {
		return sid[1:11]
	}
	return sid
}

// Login starts a WebUI session, as POST /login.htm does, and returns its
// sid, "@XXXXXXXXXX@".
func (s *Sim) Login() string { return s.logins.login() }

// Logout ends the WebUI session of sid.
func (s *Sim) Logout(sid string) { s.logins.logout(sid) }

func (u *webUI) serveLogin(w http.ResponseWriter, r *http.Request) {
	sid := u.logins.login()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, sid)
}

func (u *webUI) serveLogout(w http.ResponseWriter, r *http.Request) {
	u.logins.logout(r.URL.Query().Get("sid"))
	w.WriteHeader(http.StatusNoContent)
}
