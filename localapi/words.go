package localapi

import "errors"

// Words are a message for the hub owner the way a translated product
// carries one: Text in English, as the CLI and the log say it; Kind, a
// stable name (one of Kinds) the panel says in the owner's language; and
// Detail, the technical part (an address, a server's answer, an HTTP
// status) the panel keeps in brackets. An empty or unknown Kind leaves
// Text as the message.
type Words struct {
	Kind   string `json:"kind,omitempty"`
	Detail string `json:"detail,omitempty"`
	Text   string `json:"text,omitempty"`
}

// wordsError is an error that knows its Kind and Detail.
type wordsError struct {
	kind, detail string
	err          error
}

func (e *wordsError) Error() string { return e.err.Error() }
func (e *wordsError) Unwrap() error { return e.err }

// Said gives err a kind and a detail; its text stays err's.
func Said(kind, detail string, err error) error {
	if err == nil {
		return nil
	}
	return &wordsError{kind: kind, detail: detail, err: err}
}

// WordsOf is err as Words: its text, and the kind and detail of the
// outermost Said in its chain (none: Kind "").
func WordsOf(err error) Words {
	if err == nil {
		return Words{}
	}
	w := Words{Text: err.Error()}
	var we *wordsError
	if errors.As(err, &we) {
		w.Kind, w.Detail = we.kind, we.detail
	}
	return w
}

// Kinds are every Words.Kind the agent says, each with the panel's
// sentence in English and German (panel/text.go); a test there checks that
// none is missing. The relay's refusals are KindRelayRefused followed by
// ":" and the wire's error code.
var Kinds = []string{
	// Why the relay connection failed (uplink.Explain).
	"dns", "refused", "unreachable", "timeout", "closed", "reset", "proxy", "tls-cert", "routes",
	KindRelayRefused, KindRelayRefused + ":1", KindRelayRefused + ":2", KindRelayRefused + ":3",
	KindRelayRefused + ":4", KindRelayRefused + ":5",
	// Update checks and installs (selfupdate).
	"not-found", "no-release-server", "http-status", "fetch-failed", "bad-manifest", "no-key",
	"bad-signature", "no-build", "download-failed", "download-corrupt", "bad-binary", "no-space",
	"busy", "already-running", "downgrade", "below-min-version", "min-version-unknown",
	"installer-failed", "not-changed", "rolled-back", "rollback-failed", "rolled-back-down",
	"interrupted-rolled-back", "interrupted-unchanged", "interrupted-left",
	// The panel's diagnostics (agent).
	"unenrolled", "by-address", "resolved", "no-address", "udp-no-test", "reached",
}

// KindRelayRefused is the relay's refusal of the hub (a wire.Error); a
// Kind adds ":" and the code.
const KindRelayRefused = "relay-refused"
