package selfupdate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/version"
)

// Files in the agent's state folder (its config folder). The init script's
// start guard and update-check.cgi read some of them too: keep their
// formats in step with addon/.
const (
	LockFile    = "update.lock"        // held by whoever is updating (flock)
	JournalFile = "update.journal"     // exists while binaries are being swapped
	ResultFile  = "update-result.json" // how the last update ended
	LatestFile  = "update-latest"      // the newest version last learned, one word
	LogFile     = "update.log"         // the last installer's output
)

// ErrBusy is returned by Lock while another update runs. It is the local
// API's ErrBusy, which answers 409 Conflict.
var ErrBusy = localapi.ErrBusy

// Lock takes the update lock in dir. It is a flock, so it ends with the
// process that holds it, however that process ends.
func Lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, err
	}
	return f, nil
}

// ReadResult returns the last update's result, or nil if there was none.
func ReadResult(dir string) (*localapi.UpdateResult, error) {
	b, err := os.ReadFile(filepath.Join(dir, ResultFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r localapi.UpdateResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %v", ResultFile, err)
	}
	return &r, nil
}

func writeResult(dir string, r localapi.UpdateResult) error {
	r.Time = time.Now().UTC().Truncate(time.Second)
	b, _ := json.Marshal(r)
	return atomicfile.WriteFile(filepath.Join(dir, ResultFile), append(b, '\n'), 0o644)
}

// ReadLatest returns the newest version last learned, or "" (also for a
// damaged file: the next check writes it again).
func ReadLatest(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, LatestFile))
	if v := strings.TrimSpace(string(b)); version.Valid(v) {
		return v
	}
	return ""
}

// WriteLatest records the newest version for update-check.cgi. The hub's
// flash is written only when it changes.
func WriteLatest(dir, v string) error {
	if ReadLatest(dir) == v {
		return nil
	}
	return atomicfile.WriteFile(filepath.Join(dir, LatestFile), []byte(v+"\n"), 0o644)
}

// journal is JournalFile: key=value lines, so that the init script (busybox
// sh) can undo a swap whose installer died, even if the new binary cannot
// run at all.
type journal struct {
	From, To        string
	NewSHA, PrevSHA string
	PID             int
}

func (j journal) encode() []byte {
	return fmt.Appendf(nil, "from=%s\nto=%s\nnew_sha256=%s\nprev_sha256=%s\npid=%d\n", j.From, j.To, j.NewSHA, j.PrevSHA, j.PID)
}

func readJournal(dir string) (*journal, error) {
	b, err := os.ReadFile(filepath.Join(dir, JournalFile))
	if err != nil {
		return nil, err
	}
	var j journal
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "from":
			j.From = v
		case "to":
			j.To = v
		case "new_sha256":
			j.NewSHA = v
		case "prev_sha256":
			j.PrevSHA = v
		case "pid":
			j.PID, _ = strconv.Atoi(v)
		}
	}
	return &j, nil
}

// Installer swaps the agent binary for a verified new one, restarts the
// agent through its init script and watches the new agent bring the tunnel
// up; if it does not, the previous binary goes back. It runs in its own
// process (hubtunnel update apply), holding the update lock, because
// restarting the agent ends the agent's process.
type Installer struct {
	Binary        string           // the installed agent binary
	StateDir      string           // where the journal, result and lock live
	WorkDir       string           // its own folder (PrivateDir) for the copy it installs
	Restart       []string         // the command that restarts the agent
	API           *localapi.Client // the agent's status API
	HealthTimeout time.Duration    // how long a new agent has to bring the tunnel up
	Logf          logger.Logf
}

// Apply installs the binary at newPath (already verified: CheckBinary),
// whose SHA-256 the updater took as it wrote it, as version to, replacing
// version from, and reports how it ended. It first copies newPath into its
// own folder and checks the copy's hash, and installs that copy: a file
// swapped at newPath after the check is never installed. The result is
// also written to ResultFile.
func (in *Installer) Apply(ctx context.Context, newPath, wantSHA, from, to string) localapi.UpdateResult {
	res := localapi.UpdateResult{From: from, To: to}
	defer os.Remove(newPath)
	done := func(err error) localapi.UpdateResult {
		if err != nil {
			w := Explain(err)
			res.Reason, res.ReasonKind, res.ReasonDetail = w.Text, w.Kind, w.Detail
			in.Logf("update: %s", res.Reason)
		} else {
			res.OK = true
			in.Logf("update: %s is installed and has the tunnel up", to)
		}
		if werr := writeResult(in.StateDir, res); werr != nil {
			in.Logf("update: recording the result: %v", werr)
		}
		return res
	}
	copyPath, newSHA, err := in.stage(newPath)
	if err != nil {
		return done(localapi.Said("not-changed", err.Error(), fmt.Errorf("%w; nothing was changed", err)))
	}
	defer os.Remove(copyPath)
	if wantSHA == "" || newSHA != strings.ToLower(wantSHA) {
		return done(localapi.Said("not-changed", "SHA-256", fmt.Errorf("the new binary is not the one that was checked (its SHA-256 changed); nothing was changed")))
	}
	newPath = copyPath
	prevSHA, err := sha256File(in.Binary)
	if err != nil {
		return done(localapi.Said("not-changed", err.Error(), fmt.Errorf("reading the installed binary: %w", err)))
	}
	j := journal{From: from, To: to, NewSHA: newSHA, PrevSHA: prevSHA, PID: os.Getpid()}
	jpath := filepath.Join(in.StateDir, JournalFile)
	if err := atomicfile.WriteFile(jpath, j.encode(), 0o644); err != nil {
		return done(localapi.Said("not-changed", err.Error(), fmt.Errorf("writing the update journal: %w", err)))
	}
	defer os.Remove(jpath)

	prev := in.Binary + ".prev"
	if err := keepPrevious(in.Binary, prev); err != nil {
		return done(localapi.Said("not-changed", err.Error(), fmt.Errorf("keeping the previous binary: %w; nothing was changed", err)))
	}
	if err := replace(newPath, in.Binary); err != nil {
		return done(localapi.Said("not-changed", err.Error(), fmt.Errorf("putting the new binary in place: %w; nothing was changed", err)))
	}
	in.Logf("update: %s is in place of %s; restarting the agent", to, from)
	err = in.restart(ctx)
	if err == nil {
		err = in.healthy(ctx, to)
	}
	if err == nil {
		return done(nil)
	}

	// Roll back: the previous binary goes back, and must come up again.
	reason := localapi.Said("rolled-back", err.Error(), fmt.Errorf("%s failed: %v; rolled back to %s", to, err, from))
	in.Logf("update: %v", reason)
	if rerr := os.Rename(prev, in.Binary); rerr != nil {
		return done(localapi.Said("rollback-failed", rerr.Error(), fmt.Errorf("%v, but putting it back failed: %v", reason, rerr)))
	}
	atomicfile.SyncDir(filepath.Dir(in.Binary))
	if rerr := in.restart(ctx); rerr != nil {
		return done(localapi.Said("rollback-failed", rerr.Error(), fmt.Errorf("%v, but restarting it failed: %v", reason, rerr)))
	}
	if herr := in.healthy(ctx, from); herr != nil {
		return done(localapi.Said("rolled-back-down", from+": "+herr.Error(), fmt.Errorf("%v, but %s has not brought the tunnel up either: %v", reason, from, herr)))
	}
	return done(reason)
}

// stage copies path into WorkDir (made private first) and returns the
// copy and its SHA-256, hashed as it was written.
func (in *Installer) stage(path string) (copyPath, sum string, err error) {
	if in.WorkDir == "" {
		return "", "", errors.New("the installer has no folder of its own")
	}
	if err := PrivateDir(in.WorkDir); err != nil {
		return "", "", err
	}
	src, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("reading the new binary: %w", err)
	}
	defer src.Close()
	dst, err := createExclusive(in.WorkDir, "hubtunnel-", ".new")
	if err != nil {
		return "", "", fmt.Errorf("copying the new binary: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(dst, h), io.LimitReader(src, maxBinary+1))
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst.Name())
		return "", "", fmt.Errorf("copying the new binary: %w", err)
	}
	return dst.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// keepPrevious makes prev a copy of bin: a hard link where the file
// system has them, so bin is never missing.
func keepPrevious(bin, prev string) error {
	if err := os.Remove(prev); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if os.Link(bin, prev) == nil {
		return atomicfile.SyncDir(filepath.Dir(prev))
	}
	return copyFile(bin, prev)
}

// replace puts src in dst's place atomically: copied next to dst, then
// renamed over it (src may be on another file system).
func replace(src, dst string) error {
	tmp := dst + ".new"
	if err := copyFile(src, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// A new file, never through a link left at dst.
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o755)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func (in *Installer) restart(ctx context.Context) error {
	if len(in.Restart) == 0 {
		return errors.New("no restart command")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, in.Restart[0], in.Restart[1:]...).CombinedOutput()
	if len(out) > 0 {
		in.Logf("update: %s: %s", strings.Join(in.Restart, " "), bytes.TrimSpace(out))
	}
	if err != nil {
		return fmt.Errorf("restarting the agent (%s): %v", strings.Join(in.Restart, " "), err)
	}
	return nil
}

// healthy waits until the agent's status API reports version want with
// the tunnel connected.
func (in *Installer) healthy(ctx context.Context, want string) error {
	ctx, cancel := context.WithTimeout(ctx, in.HealthTimeout)
	defer cancel()
	last := "the agent did not answer"
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := in.API.Status(actx)
		acancel()
		switch {
		case errors.Is(err, localapi.ErrNotRunning):
			// Restarting: keep what it said last.
		case err != nil:
			last = "the agent's status was unreadable"
		case st.Version != want:
			last = fmt.Sprintf("version %s answered", st.Version)
		case st.State == localapi.StateConnected:
			return nil
		default:
			last = "tunnel " + st.State
			if st.LastError != "" {
				last += ": " + st.LastError
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the tunnel was not up within %v (%s)", in.HealthTimeout, last)
		case <-tick.C:
		}
	}
}

// Recovery is what Recover found and did.
type Recovery struct {
	From, To   string // the interrupted update's versions
	RolledBack bool   // the binary on disk is version From again
}

// Recover finishes an update whose installer died (kill -9, power loss):
// if a journal is left and nobody holds the update lock, the new binary
// was never confirmed healthy, so the previous one goes back. It returns
// nil if there was nothing to recover. The caller restarts the agent if
// the running version is no longer the installed one.
func Recover(dir, binary string) (*Recovery, error) {
	j, err := readJournal(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	lock, err := Lock(dir)
	if err == ErrBusy {
		return nil, nil // the installer is alive and busy
	}
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if _, err := os.Stat(filepath.Join(dir, JournalFile)); err != nil {
		return nil, nil // it finished between our two looks
	}
	rec := &Recovery{From: j.From, To: j.To}
	res := localapi.UpdateResult{From: j.From, To: j.To}
	cur, _ := sha256File(binary)
	prev := binary + ".prev"
	switch prevSHA, _ := sha256File(prev); {
	case cur == j.NewSHA && prevSHA == j.PrevSHA && j.PrevSHA != "":
		if err := os.Rename(prev, binary); err != nil {
			return nil, fmt.Errorf("rolling back an interrupted update: %w", err)
		}
		atomicfile.SyncDir(filepath.Dir(binary))
		rec.RolledBack = true
		res.Reason = fmt.Sprintf("the update to %s was interrupted; rolled back to %s", j.To, j.From)
		res.ReasonKind, res.ReasonDetail = "interrupted-rolled-back", j.To+" → "+j.From
	case cur == j.PrevSHA:
		res.Reason = fmt.Sprintf("the update to %s was interrupted before it changed anything", j.To)
		res.ReasonKind, res.ReasonDetail = "interrupted-unchanged", j.To
	default:
		res.Reason = fmt.Sprintf("the update to %s was interrupted; the installed binary is neither version, left as it is", j.To)
		res.ReasonKind, res.ReasonDetail = "interrupted-left", j.To
	}
	if err := writeResult(dir, res); err != nil {
		return nil, err
	}
	return rec, os.Remove(filepath.Join(dir, JournalFile))
}
