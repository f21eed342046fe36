package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestDamagedStateFilesAtStart: each state file the agent keeps beside its
// config, cut off or overwritten with garbage, is ignored with a warning in
// its log and a line in its status ("ignored"), and the agent comes up and
// connects: never a start that fails again at every try. The exception is
// the hub's private key (TestDamagedKeyStopsTheAgent).
func TestDamagedStateFilesAtStart(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)
	s.agent.stop(t)

	for _, c := range []struct {
		file, garbage string
		noted         bool // the status's "ignored" names it
		check         func(t *testing.T, st status)
	}{
		{file: "enrollment.json", garbage: `{"relay": "relay.example.org:74`, noted: true},
		{file: "relay-keys.json", garbage: "\x00\x01garbage", noted: true},
		{file: "update-result.json", garbage: `{"ok": tru`, noted: true},
		{file: "api-token", garbage: "0123", noted: true, check: func(t *testing.T, st status) {
			if tok := readFileString(filepath.Join(s.dir, "api-token")); !regexp.MustCompile(`^[0-9a-f]{64}\n$`).MatchString(tok) {
				t.Errorf("api-token is not a new token: %d bytes", len(tok))
			}
		}},
		{file: "update-latest", garbage: "\xff\xfe not a version", check: func(t *testing.T, st status) {
			if st.Update == nil || st.Update.Latest != "" || st.Update.Available {
				t.Errorf("update status with a damaged update-latest: %+v", st.Update)
			}
		}},
		{file: "update.journal", garbage: "from=\x00\nto=", check: func(t *testing.T, st status) {
			if st.Update == nil || st.Update.LastResult == nil || !strings.Contains(st.Update.LastResult.Reason, "interrupted") {
				t.Errorf("update status after a damaged journal: %+v", st.Update)
			}
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			path := filepath.Join(s.dir, c.file)
			writeFile(t, path, c.garbage)
			t.Cleanup(func() { os.Remove(path) })
			s.startAgent(agentOpts{})
			st := s.waitConnected(30 * time.Second)
			if c.noted {
				if !strings.Contains(strings.Join(st.Ignored, "\n"), c.file) {
					t.Errorf("status ignored = %q, want a line naming %s", st.Ignored, c.file)
				}
				if !strings.Contains(s.agent.logText(), c.file) {
					t.Errorf("the agent's log does not name %s", c.file)
				}
			}
			if c.check != nil {
				c.check(t, st)
			}
			s.agent.stop(t)
		})
	}
}

// TestDamagedKeyStopsTheAgent: a cut-off private key stops the agent with a
// message saying what to do, and the file is left as it is: a new key would
// lock the hub out of its relay without anyone being told.
func TestDamagedKeyStopsTheAgent(t *testing.T) {
	t.Parallel()
	s := newHub(t, setupOpts{})
	key := filepath.Join(s.dir, "hub.key")
	whole := readFileString(key)
	cut := whole[:len(whole)/2]
	writeFile(t, key, cut)
	s.startAgent(agentOpts{})
	poll.Until(t, 30*time.Second, "the agent to stop", func() bool { return !s.agent.alive() })
	log := s.agent.logText()
	for _, want := range []string{"hub.key is damaged", "not replaced", "lock this hub out"} {
		if !strings.Contains(log, want) {
			t.Errorf("the agent's message lacks %q:\n%s", want, log)
		}
	}
	if got := readFileString(key); got != cut {
		t.Errorf("the damaged key file was changed")
	}
}
