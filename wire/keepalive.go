package wire

import "time"

// keepaliveFilter leaves out WireGuard keepalives that data does the job
// of, and lets the rest share a TCP segment with other messages where it
// can. WireGuard sends a keepalive (a 32-byte transport message with no
// payload) to confirm a new session to the responder right after a
// handshake, and, after receiving without sending for 10 s, to show it is
// alive. A data message on the same session does both jobs: the responder
// switches to a session on its first authenticated message of any length
// (wireguard-go's ReceivedWithKeypair). Over TCP each keepalive sent alone
// costs a 52-byte header for its 34 bytes, so:
//
//   - a keepalive for the session the last data message went out on,
//     within KeepaliveRedundantAfter of it, is left out;
//   - a keepalive that would go out alone, on a connection that has
//     carried data already, is held for up to KeepaliveHold: left out if
//     data of its session follows, sent in front of whatever else is
//     written first, or sent alone when the time is up.
//
// Holding it delays nothing that matters. A responder cannot send on a
// new session before it is confirmed, but on a connection that has
// carried data a new session is a rekey: WireGuard starts one when the
// current session is 120 s old (sending) or 165 s old (receiving), and the
// responder keeps sending on that one, valid until 180 s. A session
// started because the last one expired has data waiting, which goes
// instead of a keepalive. The first handshake on a connection is
// confirmed at once. Dead-peer timers allow 15 s. The cost is one timer
// per connection; it fires at most once per held keepalive.
//
// It is not safe for concurrent use; Conn calls it under its write lock.
type keepaliveFilter struct {
	dataIdx uint32    // receiver index of the last data message written
	dataAt  time.Time // when it was written; zero before any

	held   []byte // a keepalive waiting, or nil
	heldAt time.Time
	buf    []byte // held's storage: the caller's buffer is not ours to keep
	timer  *time.Timer
	flush  func()
	out    [][]byte
}

const (
	// KeepaliveRedundantAfter is how recent data of the same session must
	// be for a keepalive to be left out outright. After a rekey while data
	// flows, a data packet on the new session often goes out a millisecond
	// before the confirming keepalive.
	KeepaliveRedundantAfter = time.Second

	// KeepaliveHold is how long a keepalive that would go out alone waits
	// for company.
	KeepaliveHold = time.Second
)

// newKeepaliveFilter returns a filter that calls flush, from its own
// goroutine, when a held keepalive's time is up; flush should take the
// writer's lock and write what due returns.
func newKeepaliveFilter(flush func()) *keepaliveFilter {
	return &keepaliveFilter{flush: flush}
}

// filter returns the messages to write now in place of bufs, in order, and
// how many keepalives it left out. The returned slice is valid until the
// next call.
func (k *keepaliveFilter) filter(bufs [][]byte, now time.Time) (send [][]byte, skipped int) {
	for _, p := range bufs {
		if Classify(p) == Data {
			k.dataIdx, k.dataAt = Index(p), now
		}
	}
	send = k.out[:0]
	if k.held != nil {
		if k.redundant(k.held, now) {
			skipped++
		} else {
			send = append(send, k.held)
		}
		k.held = nil
		k.timer.Stop()
	}
	for _, p := range bufs {
		if Classify(p) != Keepalive {
			send = append(send, p)
			continue
		}
		switch {
		case k.redundant(p, now):
			skipped++
		case len(bufs) == 1 && len(send) == 0 && !k.dataAt.IsZero():
			k.hold(p, now)
		default:
			send = append(send, p)
		}
	}
	k.out = send
	return send, skipped
}

// due returns the held keepalive if its time is up, and forgets it; nil
// if there is none or it may still wait.
func (k *keepaliveFilter) due(now time.Time) []byte {
	if k.held == nil || now.Sub(k.heldAt) < KeepaliveHold {
		return nil
	}
	p := k.held
	k.held = nil
	return p
}

func (k *keepaliveFilter) hold(p []byte, now time.Time) {
	k.buf = append(k.buf[:0], p...)
	k.held, k.heldAt = k.buf, now
	if k.timer == nil {
		k.timer = time.AfterFunc(KeepaliveHold, k.flush)
	} else {
		k.timer.Reset(KeepaliveHold)
	}
}

// redundant reports whether keepalive p is for the session the last data
// message went out on, within KeepaliveRedundantAfter.
func (k *keepaliveFilter) redundant(p []byte, now time.Time) bool {
	return !k.dataAt.IsZero() && Index(p) == k.dataIdx && now.Sub(k.dataAt) < KeepaliveRedundantAfter
}
