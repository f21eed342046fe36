package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Client talks to a running agent's API. Each call's deadline is its
// context's.
type Client struct {
	// Addr is the agent's API, "host:port" (ui_listen, with an
	// unspecified host replaced by 127.0.0.1: see NewClient).
	Addr string
	// HTTP sends the requests. Default: one that never uses a proxy.
	HTTP *http.Client
	// Token is the API token the actions (every POST) need; ReadToken
	// reads it. Status needs none.
	Token string
}

// ReadToken reads the API token the agent whose config folder is dir
// made (TokenFile). Only root can: the error says so in a hub owner's words.
func ReadToken(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	switch {
	case errors.Is(err, os.ErrPermission):
		return "", fmt.Errorf("cannot read the agent's API token %s: run this as root on the hub", filepath.Join(dir, TokenFile))
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("no API token at %s: the agent makes it when it starts; is hubtunnel running with this config?", filepath.Join(dir, TokenFile))
	case err != nil:
		return "", fmt.Errorf("reading the agent's API token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if !validToken(t) {
		return "", fmt.Errorf("%s is not an API token; restart the agent to make a new one", filepath.Join(dir, TokenFile))
	}
	return t, nil
}

// NewClient returns a client of the API an agent serves on uiListen (its
// config's ui_listen): an agent listening on all addresses is asked on
// 127.0.0.1.
func NewClient(uiListen string) *Client {
	host, port, _ := net.SplitHostPort(uiListen)
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return &Client{Addr: net.JoinHostPort(host, port)}
}

// ErrNotRunning is the error of a call no agent answered.
var ErrNotRunning = errors.New("hubtunnel is not running")

// maxAnswer bounds what the client reads of an answer.
const maxAnswer = 1 << 20

var defaultHTTP = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}}

// Status returns GET /api/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	code, body, err := c.do(ctx, "GET", "/api/status", nil)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, answerError(code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("localapi: the agent's status is unreadable: %w", err)
	}
	return st, nil
}

// Check asks the agent to check for a new release now. It returns the
// update status after the check; a failed check's error is the agent's
// reason, with the status the agent still reports.
func (c *Client) Check(ctx context.Context) (UpdateStatus, error) {
	var ans CheckResponse
	if err := c.post(ctx, "/api/update/check", struct{}{}, &ans); err != nil {
		return ans.Update, err
	}
	if ans.Error != "" {
		return ans.Update, errors.New(ans.Error)
	}
	return ans.Update, nil
}

// Install asks the agent to install a release. It returns once the agent
// has downloaded and verified it and started the installer, with the
// version being installed; the outcome shows later in Status's
// Update.LastResult. An error is the agent's reason in plain words.
func (c *Client) Install(ctx context.Context, opt InstallOptions) (string, error) {
	var ans InstallResponse
	if err := c.post(ctx, "/api/update/install", opt, &ans); err != nil {
		return "", err
	}
	if ans.Error != "" {
		return "", errors.New(ans.Error)
	}
	return ans.Installing, nil
}

// Enroll asks the agent to enroll the hub with code. It returns once the
// relay has answered and the agent has kept the enrollment, with the hub's
// name, its URL and the relay; the agent then restarts to connect (Status
// answers again once it runs). An error is the agent's reason in plain
// words.
func (c *Client) Enroll(ctx context.Context, code string) (EnrollResponse, error) {
	var ans EnrollResponse
	if err := c.post(ctx, "/api/enroll", EnrollRequest{Code: code}, &ans); err != nil {
		return ans, err
	}
	if ans.Error != "" {
		return EnrollResponse{}, errors.New(ans.Error)
	}
	return ans, nil
}

// RotateKey asks the agent to replace the hub's key through the tunnel; it
// returns the new public key. An error is the agent's reason in plain
// words.
func (c *Client) RotateKey(ctx context.Context) (string, error) {
	var ans RotateKeyResponse
	if err := c.post(ctx, "/api/rotate-key", struct{}{}, &ans); err != nil {
		return "", err
	}
	if ans.Error != "" {
		return "", errors.New(ans.Error)
	}
	return ans.PublicKey, nil
}

// post sends in as JSON and decodes the JSON answer into out, whatever
// its HTTP status: the actions explain their refusals in an "error" field.
func (c *Client) post(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	code, body, err := c.do(ctx, "POST", path, b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return answerError(code, body)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr+path, r)
	if err != nil {
		return 0, nil, fmt.Errorf("localapi: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == "POST" && c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	h := c.HTTP
	if h == nil {
		h = defaultHTTP
	}
	resp, err := h.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w (no answer on %s)", ErrNotRunning, c.Addr)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("localapi: reading the agent's answer: %w", err)
	}
	return resp.StatusCode, data, nil
}

// answerError describes an answer that is not the API's JSON, such as a
// refusal in plain text.
func answerError(code int, body []byte) error {
	text := strings.TrimSpace(string(body))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return fmt.Errorf("the agent answered %d %s: %s", code, http.StatusText(code), text)
}
