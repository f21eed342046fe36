package localapi

import (
	"time"

	"github.com/hubtunnel/hubtunnel/hubinfo"
)

// Status is what GET /api/status returns.
type Status struct {
	State     string    `json:"state"` // unenrolled | connecting | connected | disabled
	Name      string    `json:"name"`
	Relay     string    `json:"relay"`
	URL       string    `json:"url,omitempty"`       // the hub's WebUI through the relay, as the relay said when the hub enrolled
	Enrolled  time.Time `json:"enrolled,omitzero"`   // when the hub enrolled; zero when the relay is set in the config file
	Transport string    `json:"transport"`           // tcp | udp | tls | auto, as configured
	RelayTLS  string    `json:"relay_tls,omitempty"` // the relay's TLS port, for transport tls and auto
	// Route is how the current relay connection was opened: "tcp", "tcp
	// via proxy", "tls" or "tls via proxy"; empty while there is none, and
	// with transport udp.
	Route          string    `json:"route,omitempty"`
	TunnelIP       string    `json:"tunnel_ip"`
	PublicKey      string    `json:"public_key,omitempty"`
	LastHandshake  time.Time `json:"last_handshake,omitzero"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	LastError      string    `json:"last_error,omitempty"` // why the last attempt failed, while not connected
	RelaySoftware  string    `json:"relay_software,omitempty"`
	BytesRx        uint64    `json:"bytes_rx"`
	BytesTx        uint64    `json:"bytes_tx"`
	OverheadBytes  uint64    `json:"overhead_bytes"` // beyond users' traffic since the start, as the network sees it: WireGuard, framing, TLS, TCP/IP headers, ACKs, keepalives (package stats)
	SessionsActive int       `json:"sessions_active"`
	SessionsTotal  uint64    `json:"sessions_total"`
	DroppedPackets uint64    `json:"dropped_packets"`
	// TCPRetransmits counts the TCP segments the hub's end of the tunnel
	// sent again since the start (lost on the way to the relay, or thought
	// lost), TCPTimeouts the retransmission timeouts among those repairs,
	// each a wait of at least 200 ms; absent while none.
	TCPRetransmits uint64        `json:"tcp_retransmits,omitempty"`
	TCPTimeouts    uint64        `json:"tcp_timeouts,omitempty"`
	DNSSource      string        `json:"dns_source,omitempty"` // where the relay's address came from: hosts, system, fallback or cache
	DNSAnswer      []string      `json:"dns_answer,omitempty"` // the relay's addresses, in the order they are tried
	Version        string        `json:"version"`
	Hub            hubinfo.Hub   `json:"hub"`
	Update         *UpdateStatus `json:"update,omitempty"` // absent when the agent cannot update itself (no config file)
	// CCUFirewall is how the CCU's own firewall settings are applied to
	// tunnel connections; absent when [ccu] firewall_file is off.
	CCUFirewall *CCUFirewallStatus `json:"ccu_firewall,omitempty"`
	// Supervisor is what the addon's supervisor (its init script) saw of
	// crashes; absent when it left no supervisor.state beside the config.
	Supervisor *SupervisorStatus `json:"supervisor,omitempty"`
	// Ignored lists the agent's state files it could not use at start
	// (damaged, cut off), each with what it did instead, in plain words.
	Ignored []string `json:"ignored,omitempty"`
	// Today and Month are the traffic record's totals for the hub's
	// local day and calendar month (package stats).
	Today *Traffic `json:"today,omitempty"`
	Month *Traffic `json:"month,omitempty"`
	// SessionsRefused counts the tunnel connections reset since the start
	// because max_sessions were in flight; absent while none were.
	SessionsRefused uint64 `json:"sessions_refused,omitempty"`
	// Goroutines is the agent process's goroutine count now: what tests
	// compare before and after a fault to see that nothing was left behind.
	Goroutines int `json:"goroutines,omitempty"`

	// LastErrorKind names LastError's class (Kinds), for the panel to say
	// it in the owner's language with LastErrorDetail in brackets.
	LastErrorKind   string `json:"last_error_kind,omitempty"`
	LastErrorDetail string `json:"last_error_detail,omitempty"`
}

// SupervisorStatus is the "supervisor" part of Status: the addon's crash
// restarts, from supervisor.state.
type SupervisorStatus struct {
	Restarts  int       `json:"restarts"`            // crash restarts since the last start
	LastExit  string    `json:"last_exit,omitempty"` // how the last crash ended: an exit code, or a signal ("SIGKILL")
	LastCrash time.Time `json:"last_crash,omitzero"` // when
	GivenUp   bool      `json:"given_up"`            // too many crashes: no longer restarted
}

// Traffic is bytes the tunnel moved, users' traffic and overhead each way
// ("in" towards the hub), as the network sees them.
type Traffic struct {
	UserIn      uint64 `json:"user_in"`
	UserOut     uint64 `json:"user_out"`
	OverheadIn  uint64 `json:"overhead_in"`
	OverheadOut uint64 `json:"overhead_out"`
	Total       uint64 `json:"total"`
}

// CCUFirewallStatus is the "ccu_firewall" part of Status.
type CCUFirewallStatus struct {
	File     string `json:"file"`
	Source   string `json:"source"`          // file | defaults (no file: the CCU's factory defaults) | lockdown (the file cannot be used: only the WebUI)
	Error    string `json:"error,omitempty"` // why the file cannot be used
	Settings string `json:"settings"`        // what is applied, in one line
	Refused  uint64 `json:"refused"`         // tunnel connections refused since the start
}

// The values of Status.State.
const (
	StateUnenrolled = "unenrolled" // no relay yet: the hub waits for an enrollment code
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateDisabled   = "disabled"
)

// UpdateStatus is the "update" part of Status: what the self-updater
// knows and plans.
type UpdateStatus struct {
	Auto           bool          `json:"auto"`
	Window         string        `json:"window"`
	Latest         string        `json:"latest,omitempty"` // the newest release last seen
	Available      bool          `json:"available"`        // Latest is newer than what runs
	CheckedAt      time.Time     `json:"checked_at,omitzero"`
	CheckError     string        `json:"check_error,omitempty"`
	NextCheck      time.Time     `json:"next_check,omitzero"`
	PlannedInstall time.Time     `json:"planned_install,omitzero"` // when Auto will install Latest
	Installing     string        `json:"installing,omitempty"`     // a version being installed now
	LastResult     *UpdateResult `json:"last_result,omitempty"`    // how the last install ended

	// CheckErrorKind and CheckErrorDetail are CheckError's Words.
	CheckErrorKind   string `json:"check_error_kind,omitempty"`
	CheckErrorDetail string `json:"check_error_detail,omitempty"`
}

// UpdateResult is how the last update ended. It is also the record the
// self-updater keeps in its state folder (update-result.json), which the
// addon's init script writes too after it undoes an interrupted update.
type UpdateResult struct {
	OK     bool      `json:"ok"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"` // why it failed, in plain words
	Time   time.Time `json:"time"`

	// ReasonKind and ReasonDetail are Reason's Words; absent in a result
	// the addon's init script wrote.
	ReasonKind   string `json:"reason_kind,omitempty"`
	ReasonDetail string `json:"reason_detail,omitempty"`
}

// InstallOptions are what a user may ask of an install: the body of POST
// /api/update/install.
type InstallOptions struct {
	Version        string `json:"version,omitempty"` // default: the newest
	AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
}

// CheckResponse is the answer to POST /api/update/check: the update status
// after the check, and why it failed if it did.
type CheckResponse struct {
	Error  string       `json:"error,omitempty"`
	Update UpdateStatus `json:"update"`

	ErrorKind   string `json:"error_kind,omitempty"` // Error's Words
	ErrorDetail string `json:"error_detail,omitempty"`
}

// InstallResponse is the answer to POST /api/update/install: the version
// being installed, or why nothing is.
type InstallResponse struct {
	Error      string `json:"error,omitempty"`
	Installing string `json:"installing,omitempty"`

	ErrorKind   string `json:"error_kind,omitempty"` // Error's Words
	ErrorDetail string `json:"error_detail,omitempty"`
}

// errorResponse is any other refusal of an action.
type errorResponse struct {
	Error string `json:"error"`
}

// EnrollRequest is the body of POST /api/enroll: the enrollment code as
// the owner typed or pasted it.
type EnrollRequest struct {
	Code string `json:"code"`
}

// EnrollResponse is the answer to POST /api/enroll: the hub's name, its
// WebUI's address through the relay and the relay, or why the hub did not
// enroll. After a success the agent restarts to connect.
type EnrollResponse struct {
	Error string `json:"error,omitempty"`
	Hub   string `json:"hub,omitempty"`
	URL   string `json:"url,omitempty"`
	Relay string `json:"relay,omitempty"`
}

// RotateKeyResponse is the answer to POST /api/rotate-key: the hub's new
// public key, or why it kept the old one.
type RotateKeyResponse struct {
	Error     string `json:"error,omitempty"`
	PublicKey string `json:"public_key,omitempty"`
}
