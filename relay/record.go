package relay

import (
	"context"
	"sync"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/logger"
	"github.com/hubtunnel/hubtunnel/store"
)

// recorder brings the store up to date with the hubs' records (hub.record:
// online since when, over what, what the agent said of itself) from one
// goroutine, many hubs to a transaction. An agent's connection does not
// wait for the disk, and hubs that come online together — a relay's
// restart, thousands of UDP hubs found in one look at WireGuard's peers —
// cost one commit per batch, not one each: with a goroutine and a commit
// per hub, SQLite's writers waited on each other's fsyncs past the busy
// timeout, and the hubs whose write failed stayed offline in
// `hubrelay hub list` (265 of 2,000 UDP hubs in the bench). One writer
// also keeps each hub's records in their order: a connect and a disconnect
// in quick succession reach the store in that order, or only the last.
type recorder struct {
	mu      sync.Mutex
	pending []*hub
	wake    chan struct{} // one token: there is something pending
	stop    chan struct{} // closed by Close, after the connections ended
	done    chan struct{} // closed when the goroutine has written the last
	started bool
}

// maxRecordBatch is the most hubs one transaction records, so that the
// store's write lock, which logins and the audit log also need, is held
// for one batch's time (2,000 hubs took well under a second in
// TestManyHubsOnlineAtOnceAllRecorded), not for all of a sweep's hubs.
const maxRecordBatch = 1000

func newRecorder() *recorder {
	return &recorder{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// recordHub queues h for the recorder if its record changed since the
// store was last told.
func (s *Server) recordHub(h *hub) {
	h.mu.Lock()
	if h.recording || h.record == h.recorded {
		h.mu.Unlock()
		return
	}
	h.recording = true
	h.mu.Unlock()
	r := s.rec
	r.mu.Lock()
	r.pending = append(r.pending, h)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// startRecorder starts the recorder's goroutine; Close stops it, once the
// records of the connections it closed are written.
func (s *Server) startRecorder() {
	s.rec.started = true
	go func() {
		defer close(s.rec.done)
		for {
			select {
			case <-s.rec.wake:
				s.recordPending()
			case <-s.rec.stop:
				s.recordPending()
				return
			}
		}
	}()
}

// stopRecorder ends the recorder's goroutine after its last batch.
func (s *Server) stopRecorder() {
	close(s.rec.stop)
	if s.rec.started {
		<-s.rec.done
	}
}

// recordPending writes every queued hub's latest record, a batch at a time.
func (s *Server) recordPending() {
	for {
		r := s.rec
		r.mu.Lock()
		n := min(len(r.pending), maxRecordBatch)
		batch := r.pending[:n:n]
		r.pending = r.pending[n:]
		if len(r.pending) == 0 {
			r.pending = nil // let the backing array go
		}
		r.mu.Unlock()
		if n == 0 {
			return
		}
		states := make([]store.HubState, n)
		for i, h := range batch {
			h.mu.Lock()
			want := h.record
			// Told now, also when the write fails: a change from here on
			// queues the hub again, and the next change tries again.
			h.recorded, h.recording = want, false
			h.mu.Unlock()
			states[i] = store.HubState{Name: h.Name, Since: want.since, Transport: want.transport, Info: want.info}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := s.db.RecordHubStates(ctx, states)
		cancel()
		if err != nil {
			s.storeErrLog.Warn("store: recording the hubs' state failed", "hubs", n, logger.Err, err)
		}
	}
}
