package selfupdate

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
)

// Options are what the agent gives its Updater.
type Options struct {
	Config     *Config      // the [update] table, validated
	StateDir   string       // the agent's state folder (its config's): lock, journal, result, latest version
	ConfigFile string       // the agent's config file, handed to the installer process
	Running    string       // the running agent's version
	Arch       string       // the hub's artifact key (hubinfo.Hub.Arch)
	Client     *http.Client // fetches releases; the agent's goes through the tunnel to the relay
	Logf       logger.Logf
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Restart asks the agent to run binary in place of itself: a
	// recovery put another version back under the running agent.
	Restart func(binary string)
}

// Updater is the agent's self-updater at work: it checks for releases
// daily at a random minute (the first time 2–30 minutes after Start, so
// that the hubs of a restarted relay do not all ask at once), installs a
// newer one by itself at a random moment inside the window when Auto is
// on, installs on request (CheckNow, Install: the local API's actions),
// and finishes an update whose installer died. New, then Start; Close
// stops it.
type Updater struct {
	cfg        *Config
	dir        string
	configFile string
	binary     string
	arch       string
	current    string
	src        Source
	logf       logger.Logf
	restart    func(string)
	dailyMin   int           // minute of the day of the daily check
	firstCheck time.Duration // after Start
	now        func() time.Time
	random     func() float64

	mu sync.Mutex
	st localapi.UpdateStatus

	wake    chan struct{} // a check from the API: plan from its answer
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when run returns

	lifeMu          sync.Mutex
	started, closed bool
}

// New prepares an updater; it does nothing before Start.
func New(o Options) *Updater {
	u := &Updater{
		cfg:        o.Config,
		dir:        o.StateDir,
		configFile: o.ConfigFile,
		binary:     o.Config.InstalledBinary(),
		arch:       o.Arch,
		current:    o.Running,
		src:        Source{URL: o.Config.url, Keys: o.Config.keys, Client: o.Client},
		logf:       logger.OrDiscard(o.Logf),
		restart:    o.Restart,
		dailyMin:   rand.IntN(24 * 60),
		firstCheck: 2*time.Minute + rand.N(28*time.Minute),
		now:        o.Now,
		random:     rand.Float64,
		wake:       make(chan struct{}, 1),
		closing:    make(chan struct{}),
		done:       make(chan struct{}),
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.restart == nil {
		u.restart = func(string) {}
	}
	u.st = localapi.UpdateStatus{Auto: u.cfg.IsAuto(), Window: u.cfg.Window, Latest: ReadLatest(u.dir)}
	u.st.Available = u.newer(u.st.Latest)
	u.st.LastResult, _ = ReadResult(u.dir)
	return u
}

// Start runs the updater's loop until Close. It does nothing after Close.
func (u *Updater) Start() {
	u.lifeMu.Lock()
	defer u.lifeMu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	go u.run()
}

// Close stops the loop and waits for it. An installer already started
// runs on: it restarts the agent. Close is idempotent.
func (u *Updater) Close() {
	u.lifeMu.Lock()
	started, closed := u.started, u.closed
	u.closed = true
	u.lifeMu.Unlock()
	if !closed {
		close(u.closing)
	}
	if started {
		<-u.done
	}
}

func (u *Updater) newer(v string) bool {
	c, err := version.Compare(v, u.current)
	return err == nil && c > 0
}

// Status is what the updater knows and plans now.
func (u *Updater) Status() localapi.UpdateStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := u.st
	if r, err := ReadResult(u.dir); err == nil {
		st.LastResult = r
	}
	return st
}

// Check fetches the newest release's manifest and records what it says.
func (u *Updater) Check(ctx context.Context) (localapi.UpdateStatus, error) {
	m, err := u.src.Manifest(ctx, "")
	u.mu.Lock()
	u.st.CheckedAt = u.now().UTC().Truncate(time.Second)
	if err != nil {
		w := Explain(err)
		u.st.CheckError, u.st.CheckErrorKind, u.st.CheckErrorDetail = w.Text, w.Kind, w.Detail
	} else {
		u.st.CheckError, u.st.Latest = "", m.Version
		u.st.CheckErrorKind, u.st.CheckErrorDetail = "", ""
		u.st.Available = u.newer(m.Version)
	}
	u.mu.Unlock()
	if err != nil {
		return u.Status(), err
	}
	if err := WriteLatest(u.dir, m.Version); err != nil {
		u.logf("update: %v", err)
	}
	return u.Status(), nil
}

// CheckNow is a check a user asked for; the automatic updates plan from
// its answer at once.
func (u *Updater) CheckNow(ctx context.Context) (localapi.UpdateStatus, error) {
	st, err := u.Check(ctx)
	if err == nil {
		select {
		case u.wake <- struct{}{}:
		default:
		}
	}
	return st, err
}

// Install downloads and verifies a release and hands it to the installer
// process, which restarts the agent. It returns the version being
// installed once the installer runs; ErrBusy while another update runs.
// An older release only with opt.AllowDowngrade (the local API lets only
// root ask: its token), and never one below the newest release's
// MinVersion; the automatic updates never ask for one.
func (u *Updater) Install(ctx context.Context, opt localapi.InstallOptions) (string, error) {
	if len(u.cfg.keys) == 0 {
		return "", localapi.Said("no-key", "", errors.New("no release key: this build has none built in; set [update] public_key"))
	}
	lock, err := Lock(u.dir)
	if err != nil {
		return "", err
	}
	defer lock.Close() // the installer keeps its own copy
	CleanDownloads(u.cfg.downloads())
	m, err := u.src.Manifest(ctx, opt.Version)
	if err != nil {
		return "", err
	}
	floor := m.MinVersion
	if opt.Version != "" {
		// The floor is the newest release's: an old manifest cannot
		// know that a later release refuses it.
		newest, err := u.src.Manifest(ctx, "")
		if err != nil {
			return "", localapi.Said("min-version-unknown", localapi.WordsOf(err).Text, fmt.Errorf("cannot learn the newest release's minimum version, so %s is not installed: %w", m.Version, err))
		}
		floor = newest.MinVersion
	}
	if c, err := version.Compare(m.Version, floor); floor != "" && (err != nil || c < 0) {
		return "", localapi.Said("below-min-version", m.Version+" < "+floor, fmt.Errorf("%s is older than %s, the oldest version the releases still allow (min_version): not installed, not even as an explicit downgrade", m.Version, floor))
	}
	c, err := version.Compare(m.Version, u.current)
	switch {
	case err != nil:
		// A development build: no order to keep, the user asked for it.
	case c == 0:
		return "", localapi.Said("already-running", m.Version, fmt.Errorf("%s is already running", m.Version))
	case c < 0 && !opt.AllowDowngrade:
		return "", localapi.Said("downgrade", m.Version+" < "+u.current, fmt.Errorf("%s is older than the running %s; a downgrade must be asked for explicitly", m.Version, u.current))
	}
	path, sum, err := u.src.Download(ctx, m, u.arch, u.cfg.downloads())
	if err != nil {
		return "", err
	}
	if err := CheckBinary(ctx, path, u.arch, m.Version); err != nil {
		os.Remove(path)
		return "", err
	}
	u.setInstalling(m.Version)
	if err := u.startInstaller(lock, path, sum, m.Version); err != nil {
		u.setInstalling("")
		os.Remove(path)
		return "", err
	}
	u.logf("update: installing %s (running %s)", m.Version, u.current)
	return m.Version, nil
}

// startInstaller runs "hubtunnel update apply" from the installed binary,
// in its own session so the restart does not end it, holding the lock.
func (u *Updater) startInstaller(lock *os.File, path, sum, to string) error {
	logf, err := os.Create(filepath.Join(u.dir, LogFile))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(u.binary, "update", "apply", "--config", u.configFile, "--file", path, "--sha256", sum, "--from", u.current, "--to", to)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{lock} // fd 3 in the installer: InheritedLock
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return localapi.Said("installer-failed", err.Error(), fmt.Errorf("starting the installer: %w", err))
	}
	go func() {
		// Normally the restart ends this agent first. If the installer
		// ends while we live, it has failed before the restart (its
		// result says why) or rolled back without restarting us.
		cmd.Wait()
		u.setInstalling("")
	}()
	return nil
}

// InheritedLock is the installer's side of startInstaller: the update
// lock arrives as fd 3.
func InheritedLock() (*os.File, error) {
	f := os.NewFile(3, LockFile)
	if f == nil {
		return nil, errors.New("no update lock inherited")
	}
	if _, err := f.Stat(); err != nil {
		return nil, errors.New("no update lock inherited: hubtunnel update apply is run by the agent")
	}
	return f, nil
}

func (u *Updater) setInstalling(v string) {
	u.mu.Lock()
	u.st.Installing = v
	u.mu.Unlock()
}

// run is the updater's loop: recover an interrupted update, check daily
// at a random minute (the first time soon after start), and install new
// releases inside the window when Auto is on.
func (u *Updater) run() {
	defer close(u.done)
	recoverTick := time.NewTicker(30 * time.Second)
	defer recoverTick.Stop()
	nextCheck := u.now().Add(u.firstCheck)
	var planned time.Time
	for {
		u.mu.Lock()
		u.st.NextCheck, u.st.PlannedInstall = nextCheck, planned
		u.mu.Unlock()
		wake := nextCheck
		if !planned.IsZero() && planned.Before(wake) {
			wake = planned
		}
		timer := time.NewTimer(wake.Sub(u.now()))
		select {
		case <-u.closing:
			timer.Stop()
			return
		case <-recoverTick.C:
			timer.Stop()
			u.recover()
			continue
		case <-u.wake:
			// A check from the API: plan from what it found.
			timer.Stop()
			planned = u.plan(u.now())
			continue
		case <-timer.C:
		}
		timer.Stop()
		now := u.now()
		if !now.Before(nextCheck) {
			nextCheck = nextDaily(now, u.dailyMin)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := u.Check(ctx)
			cancel()
			if err != nil {
				u.logf("update: check: %v", err)
			}
			planned = u.plan(now)
		}
		if !planned.IsZero() && !now.Before(planned) {
			planned = time.Time{}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			if _, err := u.Install(ctx, localapi.InstallOptions{}); err != nil {
				u.logf("update: automatic install: %v", err)
			}
			cancel()
		}
	}
}

// plan returns when Auto installs the newest release seen, or zero: not
// Auto, nothing newer, or that version failed before.
func (u *Updater) plan(now time.Time) time.Time {
	st := u.Status()
	if !st.Available || !u.cfg.IsAuto() || u.failedBefore(st.Latest) {
		return time.Time{}
	}
	at := u.cfg.window.next(now, u.random())
	u.logf("update: %s is available; installing it at %s", st.Latest, at.Format("2006-01-02 15:04"))
	return at
}

// failedBefore reports whether installing v already failed: automatic
// updates do not try it again (a user still can).
func (u *Updater) failedBefore(v string) bool {
	r, _ := ReadResult(u.dir)
	return r != nil && !r.OK && r.To == v
}

// recover finishes an update whose installer died. If that leaves another
// version installed than the one running, the agent restarts into it.
func (u *Updater) recover() {
	rec, err := Recover(u.dir, u.binary)
	if err != nil {
		u.logf("update: %v", err)
		return
	}
	if rec == nil {
		return
	}
	if rec.RolledBack {
		u.logf("update: the update to %s was interrupted; rolled back to %s", rec.To, rec.From)
	} else {
		u.logf("update: the update to %s was interrupted; the installed binary is left as it is", rec.To)
	}
	u.setInstalling("")
	if rec.RolledBack && u.current == rec.To {
		u.restart(u.binary)
	}
}

// RecoverBeforeStart finishes an interrupted update before the agent
// starts (running is its version). It returns the binary to run instead
// of this one, or "".
func (u *Config) RecoverBeforeStart(stateDir, running string) (string, error) {
	binary := u.InstalledBinary()
	rec, err := Recover(stateDir, binary)
	if err != nil || rec == nil || !rec.RolledBack || rec.To != running {
		return "", err
	}
	return binary, nil
}
