package ccufirewall

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// State is what a File holds now: the settings to apply and where they came
// from.
type State struct {
	Settings *Settings // never nil
	Source   string    // "file", "defaults" (no file) or "lockdown" (Err)
	Err      error     // why the file was not used, for Source "lockdown"
}

// File is the settings file on disk, read again whenever it changes: each
// Current stats it (one system call) and parses it only when its size,
// modification time or identity changed, or when it was modified less than
// racyWindow ago (a rewrite within the file system's timestamp granularity
// could keep size and time). The owner's change applies to the next
// connection, without a restart. The zero value is not usable; set Path.
type File struct {
	// Path of the file, normally DefaultFile.
	Path string
	// Logf gets one line whenever the state changes (a new error, back to
	// normal), never per connection. Default: discard.
	Logf logger.Logf
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu sync.Mutex
	// Guarded by mu:
	state State
	info  fs.FileInfo // of the last read; nil when missing or unreadable
	read  bool        // state is set
}

// racyWindow: a file modified this recently is read again even when its
// size and time look unchanged.
const racyWindow = 2 * time.Second

// Current returns the state for a new connection, re-reading the file if it
// changed. Safe for concurrent use.
func (f *File) Current() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.Path)
	if err == nil && f.read && f.info != nil && sameFile(f.info, fi) && !f.racy(fi) {
		return f.state
	}
	if err != nil && errors.Is(err, fs.ErrNotExist) && f.read && f.info == nil && f.state.Source == "defaults" {
		return f.state
	}
	f.setLocked(f.load(fi, err))
	return f.state
}

func (f *File) racy(fi fs.FileInfo) bool {
	now := time.Now
	if f.Now != nil {
		now = f.Now
	}
	return now().Sub(fi.ModTime()) < racyWindow
}

func sameFile(a, b fs.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && os.SameFile(a, b)
}

// load reads and parses the file; fi and statErr are what Stat said.
func (f *File) load(fi fs.FileInfo, statErr error) (State, fs.FileInfo) {
	if statErr != nil {
		if errors.Is(statErr, fs.ErrNotExist) {
			return State{Settings: Defaults(), Source: "defaults"}, nil
		}
		return lockdown(fmt.Errorf("ccufirewall: %w", statErr)), nil
	}
	if !fi.Mode().IsRegular() {
		return lockdown(fmt.Errorf("ccufirewall: %s is not a regular file", f.Path)), nil
	}
	fd, err := os.Open(f.Path)
	if err != nil {
		return lockdown(fmt.Errorf("ccufirewall: %w", err)), nil
	}
	defer fd.Close()
	data, err := io.ReadAll(io.LimitReader(fd, MaxSize+1))
	if err != nil {
		return lockdown(fmt.Errorf("ccufirewall: %s: %w", f.Path, err)), nil
	}
	s, err := Parse(data)
	if err != nil {
		return lockdown(fmt.Errorf("%s: %w", f.Path, err)), fi
	}
	return State{Settings: s, Source: "file"}, fi
}

func lockdown(err error) State {
	return State{Settings: Lockdown(), Source: "lockdown", Err: err}
}

// setLocked stores a new state and logs when what it says changed: once
// per new error, once per change of the settings, never per connection.
func (f *File) setLocked(st State, fi fs.FileInfo) {
	before := ""
	if f.read {
		before = f.state.describe(f.Path)
	}
	f.state, f.info, f.read = st, fi, true
	if now := st.describe(f.Path); now != before {
		logger.OrDiscard(f.Logf)("ccufirewall: %s", now)
	}
}

// describe says what the state means, in a hub owner's words.
func (st State) describe(path string) string {
	switch st.Source {
	case "defaults":
		return path + " does not exist: applying the CCU's factory defaults (every service \"no access\")"
	case "lockdown":
		return fmt.Sprintf("%v; refusing the XML-RPC, script engine and other protected ports until the file is fixed", st.Err)
	}
	return "applying " + path + ": " + st.Settings.Summary()
}

// Summary describes the settings in one line for the log and the status.
func (s *Settings) Summary() string {
	if s.lockdown {
		return "lockdown: only the WebUI"
	}
	out := "mode " + s.Mode.String()
	for _, svc := range s.Services {
		out += fmt.Sprintf(", %s %s", svc.ID, svc.Access)
	}
	out += fmt.Sprintf(", %d allowed ranges", len(s.IPs))
	if len(s.Ignored) > 0 {
		out += fmt.Sprintf(" (ignored: %q)", s.Ignored)
	}
	if len(s.UserPorts) > 0 {
		out += fmt.Sprintf(", open ports %v", s.UserPorts)
	}
	return out
}
