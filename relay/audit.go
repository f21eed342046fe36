package relay

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
)

const (
	// auditQueue is how many audit records may wait for the store; more
	// are dropped and counted (the relay keeps serving when its disk is
	// slow). auditBatch and auditDelay: records are written in one
	// transaction of up to auditBatch, at most auditDelay after the first
	// of them, so a busy relay pays one disk sync per batch, not per
	// connection.
	auditQueue = 4096
	auditBatch = 256
	auditDelay = 200 * time.Millisecond
)

// auditor writes audit records to the store from a goroutine of its own:
// a request never waits for the disk.
type auditor struct {
	db      *store.Store
	log     *slog.Logger // each message at most once a minute
	ch      chan store.Event
	done    chan struct{}
	dropped atomic.Int64
	closeMu sync.RWMutex // held for reading by add, for writing by close
	closed  bool
	count   func(store.Event) // the relay's metrics (metrics.go); may be nil
}

func newAuditor(db *store.Store, log *slog.Logger) *auditor {
	a := &auditor{db: db, log: logger.Limited(log, time.Minute), ch: make(chan store.Event, auditQueue), done: make(chan struct{})}
	go a.run()
	return a
}

// add queues a record; it never blocks.
func (a *auditor) add(e store.Event) {
	if a == nil {
		return
	}
	if a.count != nil {
		a.count(e)
	}
	a.closeMu.RLock()
	defer a.closeMu.RUnlock()
	if a.closed {
		return
	}
	select {
	case a.ch <- e:
	default:
		if n := a.dropped.Add(1); n == 1 || n%1000 == 0 {
			a.log.Warn("audit: the store is not keeping up; records dropped", "dropped", n)
		}
	}
}

func (a *auditor) run() {
	defer close(a.done)
	batch := make([]store.Event, 0, auditBatch)
	for e := range a.ch {
		batch = append(batch[:0], e)
		timer := time.NewTimer(auditDelay)
	gather:
		for len(batch) < auditBatch {
			select {
			case e, ok := <-a.ch:
				if !ok {
					break gather
				}
				batch = append(batch, e)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := a.db.AppendAll(ctx, batch); err != nil {
			a.log.Warn("audit: records lost", "records", len(batch), logger.Err, err)
		}
		cancel()
	}
}

// close writes what is queued and stops; add is a no-op afterwards.
func (a *auditor) close() {
	if a == nil {
		return
	}
	a.closeMu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	a.closeMu.Unlock()
	<-a.done
}

// sessionRecord is the audit record a public connection is building: one
// principal's use of one hub's port over it, from the first request to
// the last.
type sessionRecord struct {
	id       int64 // the relay's count of sessions when it began: its log lines' session
	who      principal
	hub      string
	port     uint16
	start    time.Time
	requests int
	in0      int64 // the connection's byte counts when the record began
	out0     int64
}

// countRequest adds a request of a's to the connection's session record,
// starting one if none is open, and returns the record's id.
func (c *publicConn) countRequest(a access, port uint16) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec == nil {
		c.rec = &sessionRecord{id: c.s.metrics.sessionsStarted.Add(1), who: a.who, hub: a.hub, port: port, start: c.s.now(), in0: c.markIn, out0: c.markOut}
	}
	c.rec.requests++
	return c.rec.id
}

// endRecord ends the connection's open session record, if any, with outcome.
func (c *publicConn) endRecord(outcome string) {
	c.mu.Lock()
	rec := c.rec
	c.rec = nil
	in, out := c.in.Load(), c.out.Load()
	c.markIn, c.markOut = in, out
	c.mu.Unlock()
	if rec == nil {
		return
	}
	c.s.audit.add(store.Event{
		At: rec.start, Ended: c.s.now(), Kind: store.KindSession,
		User: rec.who.user, TokenID: tokenID(rec.who), Hub: rec.hub, Port: int(rec.port),
		Source: c.RemoteAddr().String(), BytesUp: in - rec.in0, BytesDown: out - rec.out0,
		Requests: rec.requests, Outcome: outcome,
	})
}

func tokenID(p principal) int64 {
	if p.kind == credToken {
		return p.id
	}
	return 0
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
