package localapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
)

// Agent is what the API serves. agent.Agent implements it.
type Agent interface {
	// Status reports the agent's state now. Its Update is nil when the
	// agent cannot update itself (it runs without a config file): then
	// the update actions answer 503 and CheckUpdate and InstallUpdate
	// are not called.
	Status() Status
	// CheckUpdate asks the release server for the newest release and
	// returns the update status after the check, also when it failed.
	CheckUpdate(ctx context.Context) (UpdateStatus, error)
	// InstallUpdate downloads and verifies a release and starts its
	// installer; it returns the version being installed. An error that
	// is ErrBusy (errors.Is) answers 409, any other 422.
	InstallUpdate(ctx context.Context, opt InstallOptions) (string, error)
	// Enroll enrolls the hub with an enrollment code and then restarts the
	// agent to connect. Hub, URL and Relay of the answer are set; Error
	// is not used. An error that is ErrBusy answers 409, any other 422.
	Enroll(ctx context.Context, code string) (EnrollResponse, error)
	// RotateKey replaces the hub's key through the tunnel (the relay
	// takes the new one, the old one stops working). PublicKey of the
	// answer is set. An error that is ErrBusy answers 409, any other 422.
	RotateKey(ctx context.Context) (RotateKeyResponse, error)
	// APIToken is the token every POST must carry as "Authorization:
	// Bearer <token>" (LoadOrCreateToken's); "" refuses every POST.
	APIToken() string
}

// ErrBusy is an InstallUpdate error: another update is in progress.
var ErrBusy = errors.New("another update is in progress")

// ErrEnrolling is an Enroll error: another enrollment is in progress.
var ErrEnrolling = errors.New("another enrollment is in progress")

// Handler serves the API of agent a, whose ui_listen address is listen.
func Handler(a Agent, listen string) http.Handler {
	s := &server{a: a, listen: listen}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", s.status)
	mux.HandleFunc("POST /api/update/check", s.action(s.check))
	mux.HandleFunc("POST /api/update/install", s.action(s.install))
	mux.HandleFunc("POST /api/enroll", s.guard(s.enroll))
	mux.HandleFunc("POST /api/rotate-key", s.guard(s.rotateKey))
	return mux
}

type server struct {
	a      Agent
	listen string
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	if !s.localHost(r.Host) {
		// A page elsewhere must not read the hub's status through a
		// DNS name rebound to 127.0.0.1.
		http.Error(w, "forbidden host", http.StatusForbidden)
		return
	}
	st := s.a.Status()
	st.Goroutines = runtime.NumGoroutine()
	writeJSON(w, http.StatusOK, st)
}

func (s *server) check(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	st, err := s.a.CheckUpdate(ctx)
	if err != nil {
		ws := WordsOf(err)
		writeJSON(w, http.StatusBadGateway, CheckResponse{Error: ws.Text, ErrorKind: ws.Kind, ErrorDetail: ws.Detail, Update: st})
		return
	}
	writeJSON(w, http.StatusOK, CheckResponse{Update: st})
}

func (s *server) install(w http.ResponseWriter, r *http.Request) {
	var opt InstallOptions
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&opt); err != nil && err != io.EOF {
		writeJSON(w, http.StatusBadRequest, errorResponse{"body: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Minute)
	defer cancel()
	v, err := s.a.InstallUpdate(ctx, opt)
	switch {
	case errors.Is(err, ErrBusy):
		writeJSON(w, http.StatusConflict, InstallResponse{Error: err.Error(), ErrorKind: "busy"})
	case err != nil:
		ws := WordsOf(err)
		writeJSON(w, http.StatusUnprocessableEntity, InstallResponse{Error: ws.Text, ErrorKind: ws.Kind, ErrorDetail: ws.Detail})
	default:
		writeJSON(w, http.StatusAccepted, InstallResponse{Installing: v})
	}
}

func (s *server) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, EnrollResponse{Error: "body: " + err.Error()})
		return
	}
	// The exchange is bounded by the agent (enroll.DefaultTimeout); this
	// only keeps a stuck one from holding the request for ever.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
	defer cancel()
	ans, err := s.a.Enroll(ctx, req.Code)
	switch {
	case errors.Is(err, ErrEnrolling):
		writeJSON(w, http.StatusConflict, EnrollResponse{Error: err.Error()})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, EnrollResponse{Error: err.Error()})
	default:
		ans.Error = ""
		writeJSON(w, http.StatusOK, ans)
	}
}

func (s *server) rotateKey(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	ans, err := s.a.RotateKey(ctx)
	switch {
	case errors.Is(err, ErrBusy):
		writeJSON(w, http.StatusConflict, RotateKeyResponse{Error: "the key is being replaced already"})
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, RotateKeyResponse{Error: err.Error()})
	default:
		ans.Error = ""
		writeJSON(w, http.StatusOK, ans)
	}
}

// guard guards the API's actions: a loopback Host (against DNS
// rebinding), a JSON body (a form on another site cannot send one without
// asking first) and the API token (only root on the hub can read it: any
// other local process, or a page in the owner's browser, cannot act).
func (s *server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !s.localHost(r.Host):
			http.Error(w, "forbidden host", http.StatusForbidden)
		case r.Header.Get("Content-Type") != "application/json":
			http.Error(w, "want Content-Type: application/json", http.StatusUnsupportedMediaType)
		case !tokenOK(s.a.APIToken(), r.Header.Get("Authorization")):
			w.Header().Set("WWW-Authenticate", `Bearer realm="hubtunnel"`)
			writeJSON(w, http.StatusUnauthorized, errorResponse{ErrUnauthorized.Error()})
		default:
			h(w, r)
		}
	}
}

// ErrUnauthorized is the refusal of an action without the API token.
var ErrUnauthorized = errors.New("not allowed: this needs the agent's API token (" + TokenFile + " next to its config), which only root can read; run this as root on the hub")

// tokenOK reports whether an Authorization header carries want, in time
// that does not depend on how much of it matches.
func tokenOK(want, header string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) == 1
}

// TokenFile is the API token's file in the agent's config folder: 32
// random bytes in hex, mode 0600. The agent makes it at start.
const TokenFile = "api-token"

// LoadOrCreateToken returns the API token kept in dir, making a new one if
// there is none or the file is not a token (it holds nothing else, so a
// new one loses nothing; the CLI reads the new one). The file is written
// atomically and only its owner may read it.
func LoadOrCreateToken(dir string) (tok string, replaced bool, err error) {
	path := filepath.Join(dir, TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if t := strings.TrimSpace(string(b)); validToken(t) {
			return t, false, nil
		}
		replaced = true
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("localapi: the API token: %w", err)
	}
	var raw [32]byte
	rand.Read(raw[:])
	tok = hex.EncodeToString(raw[:])
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("localapi: keeping the API token: %w", err)
	}
	return tok, replaced, nil
}

func validToken(t string) bool {
	b, err := hex.DecodeString(t)
	return err == nil && len(b) == 32
}

// action guards the update actions: guard, and an updater to act on.
func (s *server) action(h http.HandlerFunc) http.HandlerFunc {
	return s.guard(func(w http.ResponseWriter, r *http.Request) {
		if s.a.Status().Update == nil {
			writeJSON(w, http.StatusServiceUnavailable, errorResponse{"updates need the agent to run from a config file"})
			return
		}
		h(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// localHost reports whether an HTTP Host names this machine by a loopback
// address, "localhost" or the address ui_listen binds.
func (s *server) localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if uh, _, _ := net.SplitHostPort(s.listen); host == "localhost" || host == uh {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
