package ccusim

import (
	"bytes"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"net/http"
	"os"
	"strconv"
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
}

func (u *webUI) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.serveIndex)
	mux.HandleFunc("GET /api/devices", u.serveDevices)
	mux.HandleFunc("POST /echo", u.serveEcho)
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
