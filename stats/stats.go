// Package stats is the agent's traffic record: what the tunnel cost the
// hub's internet connection, per hour for 48 hours, per day for 31 days and
// per month for 12 months, split into users' traffic and overhead, each
// way; the month against a mobile plan's volume; and the last 100
// connection events. The settings panel shows it (Handler).
//
// # What is counted
//
// User traffic is the bytes users' sessions moved through the tunnel
// (portmap's splice, both ways): what a person asked the hub for.
//
// Overhead is everything else the hub's network saw on the agent's relay
// connection: the network view minus the user traffic. The network view is
//
//   - TCP transports (tcp, tls, auto; direct or through a proxy): the
//     kernel's TCP_INFO for the agent's socket (uplink.SocketCounters):
//     tcpi_bytes_sent + tcpi_segs_out × H out, tcpi_bytes_received +
//     tcpi_segs_in × H in, where H is one segment's IP and TCP header with
//     options: 52 bytes over IPv4 with TCP timestamps (20 IP, 20 TCP, 12
//     timestamp option), 72 over IPv6, 12 less each without timestamps
//     (tcpi_options says). So the overhead holds WireGuard's framing,
//     encryption and handshakes, the inner TCP/IP headers of the tunnelled
//     packets, TLS records, the proxy's CONNECT, and every ACK and TCP
//     keepalive probe with its headers. A socket's counts are read when it
//     closes too, so nothing between two samples is lost. SACK blocks and
//     a SYN's longer options are not seen (a few bytes per connection).
//   - UDP: every WireGuard datagram's bytes plus 28 (IPv4: 20 IP, 8 UDP)
//     or 48 (IPv6) per datagram, each way.
//
// Link-layer framing (Ethernet, PPPoE, a mobile network's own) is not
// counted: it differs per link and the hub cannot see it. 1 KB is 1000
// bytes, 1 MB 1000 KB, as mobile plans count.
//
// # Time
//
// Buckets follow the hub's local time (the owner reads "today"): an hour
// bucket is a local hour (during the night the clocks go back, 02:00–03:00
// comes twice and gets two buckets), a day a local date, a month a local
// calendar month. A hub whose clock is not set (before 2024: a CCU without
// NTP starts in 1970 or at its build date) puts nothing in buckets: the
// counts wait (Record.Pending) until the clock is plausible and then go to
// the hour it is. Buckets that begin after the present (a record saved
// while the clock ran ahead, read after it was corrected; or a clock that
// stepped back while running) are dropped from the buckets with a warning
// naming their bytes, which stay in the all-time total: kept, they would
// be added to real hours once the clock caught up.
//
// # Flash
//
// The record lives in one file (stats.json in the agent's config folder),
// written atomically (internal/atomicfile) at most every WriteEvery
// (10 minutes) while counts change, and at Close. A file that cannot be read
// or parsed is reported with a warning and the record starts empty; it is
// never a reason not to run. Up to WriteEvery of counts are lost on a power
// cut.
//
// It must never write per packet, never fail the agent, and never log a
// secret (it holds none).
package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/atomicfile"
	"github.com/hubtunnel/hubtunnel/internal/logger"
)

// FileName is the record's file in the agent's config folder.
const FileName = "stats.json"

// DefaultWriteEvery is Config.WriteEvery's default: how often a changing
// record is written at most.
const DefaultWriteEvery = 10 * time.Minute

// Keeps: how many buckets of each size and events the record holds.
const (
	KeepHours  = 48
	KeepDays   = 31
	KeepMonths = 12
	KeepEvents = 100
)

// plausibleYear is the first year a hub's clock can be trusted in; before
// it, counts wait (see Time above).
const plausibleYear = 2024

// Counts are bytes each way, split into user traffic and overhead. In is
// towards the hub (from the relay), Out from it.
type Counts struct {
	UserIn      uint64 `json:"user_in"`
	UserOut     uint64 `json:"user_out"`
	OverheadIn  uint64 `json:"overhead_in"`
	OverheadOut uint64 `json:"overhead_out"`
}

// User is the user traffic both ways.
func (c Counts) User() uint64 { return c.UserIn + c.UserOut }

// Overhead is the overhead both ways.
func (c Counts) Overhead() uint64 { return c.OverheadIn + c.OverheadOut }

// Total is every byte both ways.
func (c Counts) Total() uint64 { return c.User() + c.Overhead() }

// IsZero reports whether nothing was counted.
func (c Counts) IsZero() bool { return c == Counts{} }

// Add adds d to c.
func (c *Counts) Add(d Counts) {
	c.UserIn += d.UserIn
	c.UserOut += d.UserOut
	c.OverheadIn += d.OverheadIn
	c.OverheadOut += d.OverheadOut
}

// Bucket is the counts of one hour, day or month. Key names it: an hour by
// its start in UTC (RFC 3339, "2026-03-29T01:00:00Z"), a day by its local
// date ("2026-03-29"), a month as "2026-03"; keys of one kind sort in time
// order.
type Bucket struct {
	Key string `json:"key"`
	Counts
}

// Event is a change of the relay connection.
type Event struct {
	Time time.Time `json:"time"`
	Kind string    `json:"kind"`          // one of the Event* kinds
	Why  string    `json:"why,omitempty"` // in the hub owner's words, as the agent's status says it
}

// The kinds of Event.
const (
	EventStart        = "start"        // the agent started
	EventConnected    = "connected"    // the first connection after the start
	EventReconnected  = "reconnected"  // connected again; Why is why the last one ended
	EventDisconnected = "disconnected" // Why says why
	EventStop         = "stop"         // the agent stopped
)

// Record is the traffic record as stats.json holds it.
type Record struct {
	Version int       `json:"version"`          // recordVersion
	Saved   time.Time `json:"saved,omitzero"`   // when it was written; zero while the clock was not set
	Since   time.Time `json:"since,omitzero"`   // when counting began (first plausible time)
	Total   Counts    `json:"total"`            // every byte since Since
	Pending Counts    `json:"pending,omitzero"` // counted while the clock was not set, not yet in a bucket
	Hours   []Bucket  `json:"hours"`
	Days    []Bucket  `json:"days"`
	Months  []Bucket  `json:"months"`
	Events  []Event   `json:"events"` // oldest first
}

const recordVersion = 1

// Config is how a Recorder counts and keeps its record. The zero value
// counts in memory only, by the system clock and local time.
type Config struct {
	// File is the record's file (stats.json); "" keeps it in memory only.
	File string
	// PlanMB is the mobile plan's volume per month in MB (1 MB = 10⁶
	// bytes); 0 for none.
	PlanMB int
	// PlanStartDay is the day of the month the plan's month begins, 1 to
	// 31 (in a shorter month, its last day). Default 1.
	PlanStartDay int
	// WriteEvery is how often a changing record is written at most.
	// Default DefaultWriteEvery.
	WriteEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Location is the hub's time zone. Default time.Local.
	Location *time.Location
	// Logf logs warnings (a bad file, a clock that jumped). Default: none.
	Logf logger.Logf
	// WriteFile writes the file. Default atomicfile.WriteFile.
	WriteFile func(path string, data []byte, perm os.FileMode) error
}

// Recorder is the agent's traffic record. Its methods are safe for
// concurrent use.
type Recorder struct {
	cfg  Config
	logf logger.Logf

	mu        sync.Mutex // guards the fields below
	rec       Record
	dirty     bool      // rec changed since the last write
	lastWrite time.Time // or New's time: the first write comes WriteEvery after the start
	closed    bool
}

// New makes a Recorder and reads its file, if there is one. A file that
// cannot be used is logged and replaced by an empty record at the next
// write.
func New(cfg Config) *Recorder {
	if cfg.WriteEvery <= 0 {
		cfg.WriteEvery = DefaultWriteEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Location == nil {
		cfg.Location = time.Local
	}
	if cfg.PlanStartDay < 1 || cfg.PlanStartDay > 31 {
		cfg.PlanStartDay = 1
	}
	if cfg.WriteFile == nil {
		cfg.WriteFile = atomicfile.WriteFile
	}
	r := &Recorder{cfg: cfg, logf: logger.OrDiscard(cfg.Logf)}
	r.rec = Record{Version: recordVersion}
	if cfg.File != "" {
		rec, err := ReadFile(cfg.File)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			r.logf("stats: warning: %v; the traffic statistics start again from zero", err)
		default:
			r.rec = *rec
		}
	}
	now := cfg.Now()
	r.lastWrite = now
	if plausible(now) {
		r.settleLocked(now)
	}
	return r
}

// maxFile bounds what ReadFile reads: a full record (48 hours, 31 days,
// 12 months, 100 events) is about 30 KB.
const maxFile = 1 << 20

// ReadFile reads a record file. An error says what is wrong with it.
func ReadFile(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("stats: %s is damaged (larger than %d bytes)", path, maxFile)
	}
	var rec Record
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("stats: %s is damaged (%v)", path, err)
	}
	if rec.Version != recordVersion {
		return nil, fmt.Errorf("stats: %s is of version %d, want %d", path, rec.Version, recordVersion)
	}
	for _, bs := range [][]Bucket{rec.Hours, rec.Days, rec.Months} {
		if !slices.IsSortedFunc(bs, func(a, b Bucket) int { return compareKeys(a.Key, b.Key) }) {
			return nil, fmt.Errorf("stats: %s is damaged (buckets out of order)", path)
		}
	}
	return &rec, nil
}

func compareKeys(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Marshal is the record as its file holds it.
func (rec *Record) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(rec, "", " ")
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return append(b, '\n'), nil
}

// Add counts d at the present moment, and writes the file if the last
// write is WriteEvery ago.
func (r *Recorder) Add(d Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	if !d.IsZero() {
		r.addLocked(now, d)
	}
	if now.Before(r.lastWrite) {
		r.lastWrite = now // the clock went back: wait WriteEvery from here
	}
	if r.dirty && !r.closed && now.Sub(r.lastWrite) >= r.cfg.WriteEvery {
		r.saveLocked(now)
	}
}

// Retract takes back overhead counted too early: bytes that crossed the
// network before their session counted them were overhead for a moment
// and are users' now (the agent adds them as such). It comes off the
// present hour, day and month and the total, never below zero.
func (r *Recorder) Retract(c Counts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dirty = true
	r.rec.Total.sub(c)
	now := r.cfg.Now()
	if !plausible(now) {
		r.rec.Pending.sub(c)
		return
	}
	loc := r.cfg.Location
	for _, x := range []struct {
		bs  []Bucket
		key string
	}{{r.rec.Hours, hourKey(now, loc)}, {r.rec.Days, dayKey(now, loc)}, {r.rec.Months, monthKey(now, loc)}} {
		if n := len(x.bs); n > 0 && x.bs[n-1].Key == x.key {
			x.bs[n-1].sub(c)
		}
	}
}

// sub takes d's overhead off c, never below zero.
func (c *Counts) sub(d Counts) {
	c.OverheadIn -= min(c.OverheadIn, d.OverheadIn)
	c.OverheadOut -= min(c.OverheadOut, d.OverheadOut)
}

// Event records a connection event at the present moment.
func (r *Recorder) Event(kind, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rec.Events = append(r.rec.Events, Event{Time: r.cfg.Now(), Kind: kind, Why: why})
	if n := len(r.rec.Events) - KeepEvents; n > 0 {
		r.rec.Events = slices.Delete(r.rec.Events, 0, n)
	}
	r.dirty = true
}

// Save writes the record now if it changed.
func (r *Recorder) Save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dirty {
		return nil
	}
	return r.saveLocked(r.cfg.Now())
}

// Close writes the record if it changed; later Adds count in memory only.
// It is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if !r.dirty {
		return nil
	}
	return r.saveLocked(r.cfg.Now())
}

// Record returns a copy of the record as it stands.
func (r *Recorder) Record() Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec := r.rec
	rec.Hours = slices.Clone(rec.Hours)
	rec.Days = slices.Clone(rec.Days)
	rec.Months = slices.Clone(rec.Months)
	rec.Events = slices.Clone(rec.Events)
	return rec
}

func (r *Recorder) saveLocked(now time.Time) error {
	r.lastWrite = now
	if r.cfg.File == "" {
		r.dirty = false
		return nil
	}
	rec := r.rec
	rec.Saved = time.Time{}
	if plausible(now) {
		rec.Saved = now.UTC()
	}
	b, err := rec.Marshal()
	if err == nil {
		err = r.cfg.WriteFile(r.cfg.File, b, 0o644)
	}
	if err != nil {
		r.logf("stats: writing %s: %v", r.cfg.File, err)
		return err
	}
	r.dirty = false
	return nil
}

// plausible reports whether t can be the real time: the hub's clock is set.
func plausible(t time.Time) bool { return t.Year() >= plausibleYear }

// addLocked counts d at now.
func (r *Recorder) addLocked(now time.Time, d Counts) {
	r.dirty = true
	r.rec.Total.Add(d)
	if !plausible(now) {
		r.rec.Pending.Add(d)
		return
	}
	r.settleLocked(now)
	loc := r.cfg.Location
	r.rec.Hours = addTo(r.rec.Hours, hourKey(now, loc), d)
	r.rec.Days = addTo(r.rec.Days, dayKey(now, loc), d)
	r.rec.Months = addTo(r.rec.Months, monthKey(now, loc), d)
}

// settleLocked, with a plausible clock, puts pending counts into the
// present hour and drops the buckets outside the kept windows, in the past
// or in the future.
func (r *Recorder) settleLocked(now time.Time) {
	if r.rec.Since.IsZero() {
		r.rec.Since = now.UTC()
		r.dirty = true
	}
	loc := r.cfg.Location
	if p := r.rec.Pending; !p.IsZero() {
		r.rec.Pending = Counts{}
		r.rec.Hours = addTo(r.rec.Hours, hourKey(now, loc), p)
		r.rec.Days = addTo(r.rec.Days, dayKey(now, loc), p)
		r.rec.Months = addTo(r.rec.Months, monthKey(now, loc), p)
		r.dirty = true
	}
	lt := now.In(loc)
	y, m, day := lt.Date()
	var future Counts
	var dropped bool
	r.rec.Hours, dropped = keep(r.rec.Hours, hourKey(hourStart(now, loc).Add(-(KeepHours-1)*time.Hour), loc), hourKey(now, loc), &future)
	r.dirty = r.dirty || dropped
	var f2, f3 Counts
	r.rec.Days, dropped = keep(r.rec.Days, time.Date(y, m, day-(KeepDays-1), 12, 0, 0, 0, loc).Format(dayLayout), dayKey(now, loc), &f2)
	r.dirty = r.dirty || dropped
	r.rec.Months, dropped = keep(r.rec.Months, time.Date(y, m-(KeepMonths-1), 1, 12, 0, 0, 0, loc).Format(monthLayout), monthKey(now, loc), &f3)
	r.dirty = r.dirty || dropped
	// The months reach furthest ahead; a future hour is in a future or the
	// present month, so their largest count is what left the buckets.
	for _, c := range []Counts{f2, f3} {
		if c.Total() > future.Total() {
			future = c
		}
	}
	if !future.IsZero() {
		r.logf("stats: warning: %d bytes were counted at times after %s (the clock was ahead, or went back); they stay in the total but leave the hours, days and months", future.Total(), lt.Format(time.DateTime))
	}
}

// keep keeps the buckets with first ≤ key ≤ last, adding those after last
// to future. It reports whether it dropped any.
func keep(bs []Bucket, first, last string, future *Counts) ([]Bucket, bool) {
	n := len(bs)
	out := bs[:0]
	for _, b := range bs {
		switch {
		case b.Key > last:
			future.Add(b.Counts)
		case b.Key >= first:
			out = append(out, b)
		}
	}
	return out, len(out) != n
}

// addTo adds d to the bucket key in the sorted bs, making it if needed.
func addTo(bs []Bucket, key string, d Counts) []Bucket {
	if n := len(bs); n > 0 && bs[n-1].Key == key {
		bs[n-1].Add(d)
		return bs
	}
	i, found := slices.BinarySearchFunc(bs, key, func(b Bucket, k string) int { return compareKeys(b.Key, k) })
	if found {
		bs[i].Add(d)
		return bs
	}
	return slices.Insert(bs, i, Bucket{Key: key, Counts: d})
}

const (
	dayLayout   = "2006-01-02"
	monthLayout = "2006-01"
)

// hourStart is the start of t's local hour, as an instant. During the
// night the clocks go back, both 02:00s have their own.
func hourStart(t time.Time, loc *time.Location) time.Time {
	lt := t.In(loc)
	return lt.Add(-time.Duration(lt.Minute())*time.Minute - time.Duration(lt.Second())*time.Second - time.Duration(lt.Nanosecond()))
}

func hourKey(t time.Time, loc *time.Location) string {
	return hourStart(t, loc).UTC().Format(time.RFC3339)
}

func dayKey(t time.Time, loc *time.Location) string   { return t.In(loc).Format(dayLayout) }
func monthKey(t time.Time, loc *time.Location) string { return t.In(loc).Format(monthLayout) }
