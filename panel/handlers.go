package panel

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
)

//go:embed assets
var assets embed.FS

// staticAssets are the files served under Prefix+"assets/", by name: no
// other path reaches the embedded files.
var staticAssets = map[string]string{
	"panel.css": "text/css; charset=utf-8",
	"panel.js":  "text/javascript; charset=utf-8",
}

func (s *server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ctype, ok := staticAssets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	b, err := assets.ReadFile("assets/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(b)
}

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	s.pageSession(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.render(w, http.StatusOK, renderPanel(s.text(r)))
	})).ServeHTTP(w, r)
}

func (s *server) refusedPage(w http.ResponseWriter, r *http.Request, code int, msg string) {
	s.render(w, code, renderRefused(s.text(r), msg))
}

func (s *server) render(w http.ResponseWriter, code int, page []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(page)
}

// State is the answer to GET api/state.
type State struct {
	Status   localapi.Status `json:"status"`
	Settings Settings        `json:"settings"`
	Ports    []Port          `json:"ports"`
}

func (s *server) state(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, State{Status: s.a.Status(), Settings: s.a.Settings(), Ports: s.a.PortMap()})
}

func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Lines []string `json:"lines"`
	}{s.a.Logs()})
}

// errorAnswer is a refusal: Error for the owner; Field names the setting
// it is about; Session is set when the WebUI session is the problem.
type errorAnswer struct {
	Error   string `json:"error"`
	Field   string `json:"field,omitempty"`
	Session bool   `json:"session,omitempty"`
}

// decode reads the action's JSON body into v: one object, no unknown
// fields, nothing after it.
func (s *server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("data after the object")
	}
	if err == nil {
		if _, rerr := io.Copy(io.Discard, r.Body); rerr != nil {
			err = rerr
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		code := http.StatusBadRequest
		if errors.As(err, &mbe) {
			code = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, code, errorAnswer{Error: s.text(r).ErrBody})
		return false
	}
	return true
}

func (s *server) enroll(w http.ResponseWriter, r *http.Request) {
	var req localapi.EnrollRequest
	if !s.decode(w, r, &req) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	ans, err := s.a.Enroll(ctx, req.Code)
	switch {
	case errors.Is(err, localapi.ErrEnrolling):
		writeJSON(w, http.StatusConflict, errorAnswer{Error: err.Error(), Field: "code"})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, errorAnswer{Error: s.text(r).fieldProblem("code", err.Error()), Field: "code"})
	default:
		writeJSON(w, http.StatusOK, ans)
	}
}

func (s *server) saveSettings(w http.ResponseWriter, r *http.Request) {
	var set Settings
	if !s.decode(w, r, &set) {
		return
	}
	changed, err := s.a.SaveSettings(set)
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, errorAnswer{Error: s.text(r).fieldProblem(fe.Field, fe.Problem), Field: fe.Field})
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, errorAnswer{Error: err.Error()})
	default:
		writeJSON(w, http.StatusOK, struct {
			Changed bool `json:"changed"`
		}{changed})
	}
}

func (s *server) restart(w http.ResponseWriter, r *http.Request) {
	var none struct{}
	if !s.decode(w, r, &none) {
		return
	}
	if err := s.a.Restart(); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errorAnswer{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, struct{}{})
}

// updater admits an update action: an empty JSON body, and an agent that
// can update itself (it runs from a config file).
func (s *server) updater(w http.ResponseWriter, r *http.Request) bool {
	var none struct{}
	if !s.decode(w, r, &none) {
		return false
	}
	if s.a.Status().Update == nil {
		writeJSON(w, http.StatusServiceUnavailable, errorAnswer{Error: s.text(r).NoUpdater})
		return false
	}
	return true
}

func (s *server) check(w http.ResponseWriter, r *http.Request) {
	if !s.updater(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	st, err := s.a.CheckUpdate(ctx)
	if err != nil {
		ws := localapi.WordsOf(err)
		writeJSON(w, http.StatusBadGateway, localapi.CheckResponse{Error: ws.Text, ErrorKind: ws.Kind, ErrorDetail: ws.Detail, Update: st})
		return
	}
	writeJSON(w, http.StatusOK, localapi.CheckResponse{Update: st})
}

func (s *server) install(w http.ResponseWriter, r *http.Request) {
	if !s.updater(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	v, err := s.a.InstallUpdate(ctx, localapi.InstallOptions{})
	switch {
	case errors.Is(err, localapi.ErrBusy):
		writeJSON(w, http.StatusConflict, localapi.InstallResponse{Error: err.Error(), ErrorKind: "busy"})
	case err != nil:
		ws := localapi.WordsOf(err)
		writeJSON(w, http.StatusUnprocessableEntity, localapi.InstallResponse{Error: ws.Text, ErrorKind: ws.Kind, ErrorDetail: ws.Detail})
	default:
		writeJSON(w, http.StatusAccepted, localapi.InstallResponse{Installing: v})
	}
}

// diagAnswer is the answer of the diagnostics: what happened, in lines
// (Report: the trace and the conclusion in English), and the conclusion
// alone (Said) with the trace apart, for the page to say in its language.
type diagAnswer struct {
	OK     bool           `json:"ok"`
	Report string         `json:"report"`
	Trace  string         `json:"trace,omitempty"`
	Said   localapi.Words `json:"said"`
}

func (s *server) diagDNS(w http.ResponseWriter, r *http.Request) {
	s.diag(w, r, s.a.DNSTrace)
}

func (s *server) diagConnect(w http.ResponseWriter, r *http.Request) {
	s.diag(w, r, s.a.TestConnection)
}

func (s *server) diag(w http.ResponseWriter, r *http.Request, f func(context.Context) Finding) {
	var none struct{}
	if !s.decode(w, r, &none) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	fd := f(ctx)
	trace := strings.TrimRight(fd.Trace, "\n")
	rep := trace
	if rep != "" && fd.Said.Text != "" {
		rep += "\n"
	}
	rep += fd.Said.Text
	writeJSON(w, http.StatusOK, diagAnswer{OK: fd.OK, Report: rep, Trace: trace, Said: fd.Said})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
