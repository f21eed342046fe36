package bench

// Bytes on the agent's TCP connection, TCP/IP headers included: dumpcap
// captures loopback with a port filter, tshark prints one line per segment,
// and the segments are put back together into the frames of package wire so
// that each segment can be told apart by what it carries (Hello, handshake,
// transport data, TCP keepalive).

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hubtunnel/hubtunnel/wire"
)

// Capture is dumpcap capturing one TCP port on the loopback interface.
type Capture struct {
	File   string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartCapture starts dumpcap on lo for TCP port port, writing to
// dir/name.pcapng, and waits until it captures.
func StartCapture(dir, name string, port int) (*Capture, error) {
	return StartCaptureFilter(dir, name, fmt.Sprintf("tcp port %d", port))
}

// StartCaptureFilter starts dumpcap on lo with the capture filter filter,
// writing to dir/name.pcapng, and waits until it captures.
func StartCaptureFilter(dir, name, filter string) (*Capture, error) {
	path, err := exec.LookPath("dumpcap")
	if err != nil {
		return nil, fmt.Errorf("bench: dumpcap (tshark) is not installed: scripts/bench-deps.sh installs it")
	}
	c := &Capture{File: filepath.Join(dir, name+".pcapng"), stderr: &syncBuffer{}, done: make(chan struct{})}
	// A 64 MiB buffer (the default is 2 MiB) holds a burst of
	// loopback traffic while dumpcap waits for a busy CPU: a 4 MiB
	// download through the tunnel comes in 40 ms, and dumpcap stalled
	// for half of that dropped part of it.
	c.cmd = exec.Command(path, "-q", "-B", "64", "-i", "lo", "-f", filter, "-w", c.File)
	c.cmd.Stderr = c.stderr
	if err := startTied(c.cmd, func(error) { close(c.done) }); err != nil {
		return nil, fmt.Errorf("bench: dumpcap: %w", err)
	}
	// dumpcap names its file once the capture runs.
	err = WaitFor(10*time.Second, "dumpcap to start", func() (bool, error) {
		select {
		case <-c.done:
			return false, fmt.Errorf("bench: dumpcap exited: %s", c.stderr.String())
		default:
		}
		return strings.Contains(c.stderr.String(), "File:"), nil
	})
	if err != nil {
		c.cmd.Process.Kill()
		return nil, err
	}
	return c, nil
}

// Output is what dumpcap has said: its file, and once stopped the packets
// it captured and dropped.
func (c *Capture) Output() string { return c.stderr.String() }

// Stop ends the capture (SIGINT lets dumpcap finish its file). A capture
// that dropped packets is an error: its bytes are not the wire's. What
// dumpcap had not yet read from its buffer is lost without being counted
// as dropped: wait for the file to hold the last packet wanted first.
func (c *Capture) Stop() error {
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("bench: dumpcap did not stop on SIGINT")
	}
	if n, total := dumpcapDropped(c.Output()); n > 0 {
		return fmt.Errorf("bench: dumpcap dropped %d of %d packets, so its file is short of the wire's bytes", n, total)
	}
	return nil
}

// dumpcapDropped reads the packets dropped and received out of dumpcap's
// closing line, "Packets received/dropped on interface 'lo': 33/259 (…)".
// Without the line it reports none.
func dumpcapDropped(out string) (dropped, total int) {
	_, line, ok := strings.Cut(out, "Packets received/dropped on interface")
	if !ok {
		return 0, 0
	}
	i := strings.Index(line, "': ")
	if i < 0 {
		return 0, 0
	}
	fields := strings.Fields(line[i+3:])
	if len(fields) == 0 {
		return 0, 0
	}
	recv, drop, _ := strings.Cut(fields[0], "/")
	r, err1 := strconv.Atoi(recv)
	d, err2 := strconv.Atoi(drop)
	if err1 != nil || err2 != nil {
		return 0, 0
	}
	return d, r + d
}

// Packet is one TCP segment of the agent's connection.
type Packet struct {
	Time     time.Time
	Up       bool // agent → relay
	IPLen    int  // IP total length: IP and TCP headers and payload
	FrameLen int  // as captured on lo, which adds a 14-byte Ethernet header
	TCPLen   int  // payload bytes
	Seq, Ack uint32
	Flags    uint16
	Payload  []byte

	// Frames are the wire frames whose bytes this segment carries (whole
	// or in part), as indexes into the Stream's Frames.
	Frames []int
}

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// PureACK reports whether p carries nothing but an acknowledgement (or a
// keepalive probe, which has no payload either).
func (p *Packet) PureACK() bool { return p.TCPLen == 0 && p.Flags&(flagSYN|flagFIN|flagRST) == 0 }

// Frame is one frame of package wire, found in a direction of the stream.
type Frame struct {
	Up         bool
	Type       byte // first payload byte: 1–4 WireGuard, 0xA0… control
	Len        int  // payload length (the frame is Len+2 bytes)
	Start, End int  // byte offsets in the direction's stream, End exclusive
	First      int  // index of the packet that carried its first byte
	Last       int  // … and its last byte
}

// Stream is a capture of one agent connection, parsed.
type Stream struct {
	Packets []Packet
	Frames  []Frame
}

// ReadStream reads a capture of relay port port with tshark and parses the
// frames both ways. Only the first connection (the first SYN) is followed;
// segments of other connections are ignored.
func ReadStream(file string, port int) (*Stream, error) {
	out, err := exec.Command("tshark", "-r", file, "-o", "tcp.desegment_tcp_streams:FALSE",
		"-T", "fields", "-E", "separator=,",
		"-e", "frame.time_epoch", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "ip.len", "-e", "frame.len",
		"-e", "tcp.len", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.flags", "-e", "tcp.payload",
	).Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return nil, fmt.Errorf("bench: tshark -r %s: %v %s", file, err, msg)
	}
	return ParseStream(string(out), port)
}

// ParseStream parses tshark's field lines (see ReadStream).
func ParseStream(text string, port int) (*Stream, error) {
	s := &Stream{}
	agentPort := 0
	for ln, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 10 {
			return nil, fmt.Errorf("bench: tshark line %d: %d fields, want 10: %q", ln+1, len(f), line)
		}
		var p Packet
		var src, dst int
		var bad error
		num := func(s string, bits int) uint64 {
			base := 10
			if strings.HasPrefix(s, "0x") {
				s, base = s[2:], 16
			}
			v, err := strconv.ParseUint(s, base, bits)
			if err != nil && bad == nil {
				bad = fmt.Errorf("bench: tshark line %d: %q: %v", ln+1, s, err)
			}
			return v
		}
		sec, frac, _ := strings.Cut(f[0], ".")
		frac = (frac + "000000000")[:9]
		p.Time = time.Unix(int64(num(sec, 63)), int64(num(frac, 63)))
		src, dst = int(num(f[1], 16)), int(num(f[2], 16))
		p.IPLen, p.FrameLen, p.TCPLen = int(num(f[3], 32)), int(num(f[4], 32)), int(num(f[5], 32))
		p.Seq, p.Ack = uint32(num(f[6], 32)), uint32(num(f[7], 32))
		p.Flags = uint16(num(f[8], 16))
		if bad != nil {
			return nil, bad
		}
		if f[9] != "" {
			b, err := hex.DecodeString(strings.ReplaceAll(f[9], ":", ""))
			if err != nil {
				return nil, fmt.Errorf("bench: tshark line %d: payload: %v", ln+1, err)
			}
			p.Payload = b
		}
		if len(p.Payload) != p.TCPLen {
			return nil, fmt.Errorf("bench: tshark line %d: %d payload bytes, tcp.len %d", ln+1, len(p.Payload), p.TCPLen)
		}
		switch {
		case dst == port:
			p.Up = true
		case src == port:
		default:
			continue
		}
		other := src
		if !p.Up {
			other = dst
		}
		if agentPort == 0 && p.Up && p.Flags&flagSYN != 0 {
			agentPort = other
		}
		if agentPort == 0 || other != agentPort {
			continue // before the connection, or another one
		}
		s.Packets = append(s.Packets, p)
	}
	if len(s.Packets) == 0 {
		return nil, fmt.Errorf("bench: no agent connection to port %d in the capture", port)
	}
	s.Frames = append(s.parseFrames(true), s.parseFrames(false)...)
	// In the order they were sent (by the segment carrying their first
	// byte), so that "the first X after Y" works across both directions.
	slices.SortStableFunc(s.Frames, func(a, b Frame) int { return a.First - b.First })
	for fi, fr := range s.Frames {
		for pi := fr.First; pi <= fr.Last; pi++ {
			if p := &s.Packets[pi]; p.Up == fr.Up && p.TCPLen > 0 {
				p.Frames = append(p.Frames, fi)
			}
		}
	}
	return s, nil
}

// parseFrames puts one direction's payload back together by sequence
// number and splits it into frames.
func (s *Stream) parseFrames(up bool) []Frame {
	var (
		stream  []byte
		owner   []int // packet index of each stream byte
		base    uint32
		haveISN bool
	)
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Up != up {
			continue
		}
		if p.Flags&flagSYN != 0 {
			base, haveISN = p.Seq+1, true
			continue
		}
		if !haveISN || p.TCPLen == 0 {
			continue
		}
		off := int(p.Seq - base)
		if off < 0 || off > len(stream) {
			continue // a gap: not on loopback; skip rather than guess
		}
		if skip := len(stream) - off; skip < len(p.Payload) {
			stream = append(stream, p.Payload[skip:]...)
			for range len(p.Payload) - skip {
				owner = append(owner, i)
			}
		}
	}
	var frames []Frame
	for pos := 0; pos+2 <= len(stream); {
		n := int(binary.BigEndian.Uint16(stream[pos:]))
		if n == 0 || n > wire.MaxFrame || pos+2+n > len(stream) {
			break
		}
		frames = append(frames, Frame{Up: up, Type: stream[pos+2], Len: n, Start: pos, End: pos + 2 + n, First: owner[pos], Last: owner[pos+1+n]})
		pos += 2 + n
	}
	return frames
}

// Tally is a count of packets and their bytes.
type Tally struct {
	Packets int
	IPBytes int // IP and TCP headers included
	Frame   int // plus the 14-byte link header lo has in a capture
}

func (t *Tally) add(p *Packet) {
	t.Packets++
	t.IPBytes += p.IPLen
	t.Frame += p.FrameLen
}

// Window tallies every packet with from ≤ Time < to.
func (s *Stream) Window(from, to time.Time) Tally {
	var t Tally
	for i := range s.Packets {
		if p := &s.Packets[i]; !p.Time.Before(from) && p.Time.Before(to) {
			t.add(p)
		}
	}
	return t
}

// Resent is the payload bytes in [from, to) that the segments of one
// direction (up: agent → relay) carried again: sequence space an earlier
// segment of that direction had already carried (retransmissions, tail
// loss probes). The receiver's kernel counts such bytes once
// (TCP_INFO's tcpi_bytes_received), so a count from the receiving end is
// the capture's minus these.
func (s *Stream) Resent(from, to time.Time, up bool) int {
	var next uint32 // one past the highest sequence number seen
	seen, n := false, 0
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Up != up {
			continue
		}
		start, end := p.Seq, p.Seq+uint32(p.TCPLen)
		if p.Flags&flagSYN != 0 {
			start++ // the SYN takes the first number; its payload (none here) starts after
			end++
		}
		if !seen {
			next, seen = end, true
			continue
		}
		if dup := int(int32(min32(end, next) - start)); p.TCPLen > 0 && dup > 0 && !p.Time.Before(from) && p.Time.Before(to) {
			n += min(dup, p.TCPLen)
		}
		if int32(end-next) > 0 {
			next = end
		}
	}
	return n
}

// min32 is the earlier of two sequence numbers (wrapping, RFC 1982).
func min32(a, b uint32) uint32 {
	if int32(a-b) < 0 {
		return a
	}
	return b
}

// Handshake is what one WireGuard handshake cost on the wire.
type Handshake struct {
	Tally
	FrameBytes int       // the frames alone: initiation, response, confirmation, each +2
	Messages   int       // the initiation and the response with the TCP/IP headers of their segments
	Initiator  string    // "agent" or "relay"
	At         time.Time // the initiation's segment
	Detail     string
}

// ConfirmWithin is how long after the response HandshakeAfter looks for the
// initiator's confirming keepalive: wireguard-go sends it at once when
// nothing else is queued, and our binds hold a keepalive that would go out
// alone for up to wire.KeepaliveHold, leaving it out if data of the new
// session goes first.
const ConfirmWithin = wire.KeepaliveHold + time.Second

// HandshakeAfter finds the first handshake initiation sent at or after t and
// counts what it cost: the initiation, the response and the keepalive the
// initiator sends within ConfirmWithin of the response to confirm the new
// session, each with the TCP/IP
// headers of the segments that carry it, plus the pure ACKs of exactly those
// segments. A segment that also carries other frames (the request's data)
// adds only its headers and the handshake's frames.
func (s *Stream) HandshakeAfter(t time.Time) (Handshake, error) {
	var hs Handshake
	init := -1
	for i, f := range s.Frames {
		if f.Type == 1 && !s.Packets[f.First].Time.Before(t) {
			init = i
			break
		}
	}
	if init < 0 {
		return hs, fmt.Errorf("bench: no handshake initiation after %s", t.Format(time.TimeOnly))
	}
	up := s.Frames[init].Up
	resp, confirm := -1, -1
	for i := init + 1; i < len(s.Frames); i++ {
		f := s.Frames[i]
		if resp < 0 && f.Type == 2 && f.Up != up {
			resp = i
			continue
		}
		if resp < 0 {
			continue
		}
		respAt := s.Packets[s.Frames[resp].Last].Time
		if s.Packets[f.First].Time.Sub(respAt) > ConfirmWithin {
			break
		}
		if f.Type == 4 && f.Len == 32 && f.Up == up && f.First > s.Frames[resp].Last {
			confirm = i
			break
		}
	}
	if resp < 0 {
		return hs, fmt.Errorf("bench: no handshake response after the initiation at %s", s.Packets[s.Frames[init].First].Time.Format(time.TimeOnly))
	}
	hs.Initiator = "relay"
	if up {
		hs.Initiator = "agent"
	}
	hs.At = s.Packets[s.Frames[init].First].Time
	segs := map[int]bool{}
	var parts []string
	for _, fi := range []int{init, resp, confirm} {
		if fi < 0 {
			continue
		}
		f := s.Frames[fi]
		hs.FrameBytes += f.Len + 2
		hs.IPBytes += f.Len + 2
		hs.Frame += f.Len + 2
		if fi != confirm {
			hs.Messages += f.Len + 2
		}
		parts = append(parts, fmt.Sprintf("%s %d B", frameName(f), f.Len+2))
		for pi := f.First; pi <= f.Last; pi++ {
			p := &s.Packets[pi]
			if p.Up != f.Up || p.TCPLen == 0 || segs[pi] {
				continue
			}
			segs[pi] = true
			hdr := p.IPLen - p.TCPLen
			hs.Packets++
			hs.IPBytes += hdr
			hs.Frame += p.FrameLen - p.TCPLen
			if fi != confirm {
				hs.Messages += hdr
			}
		}
	}
	// The pure ACKs that acknowledge exactly the end of one of those
	// segments (delayed ACKs may cover several; each counts once).
	ends := map[bool]map[uint32]bool{true: {}, false: {}}
	for pi := range segs {
		p := &s.Packets[pi]
		ends[p.Up][p.Seq+uint32(p.TCPLen)] = true
	}
	acks := 0
	for pi := range s.Packets {
		p := &s.Packets[pi]
		if p.PureACK() && ends[!p.Up][p.Ack] && p.Time.After(hs.At.Add(-time.Millisecond)) {
			delete(ends[!p.Up], p.Ack)
			hs.add(p)
			acks++
		}
	}
	hs.Detail = fmt.Sprintf("Frames: %s; on the wire %d segments carry them, plus %d pure ACKs", strings.Join(parts, ", "), len(segs), acks)
	return hs, nil
}

// Probe is one TCP keepalive probe and its answer.
type Probe struct {
	FromAgent bool // the agent's keepalive; false: the relay's
	At        time.Time
	Bytes     int // the probe and the answer, IP bytes
}

// Probes finds the TCP keepalive probes sent in [from, to): segments with no
// payload whose sequence number is one below the next the sender would use,
// each with the first pure ACK the other side sent after it.
func (s *Stream) Probes(from, to time.Time) []Probe {
	next := map[bool]uint32{}
	var out []Probe
	for i := range s.Packets {
		p := &s.Packets[i]
		end := p.Seq + uint32(p.TCPLen)
		if p.Flags&(flagSYN|flagFIN) != 0 {
			end++
		}
		isProbe := p.PureACK() && next[p.Up] != 0 && p.Seq == next[p.Up]-1
		if !isProbe && (p.TCPLen > 0 || p.Flags&(flagSYN|flagFIN) != 0) {
			next[p.Up] = end
		}
		if !isProbe || p.Time.Before(from) || !p.Time.Before(to) {
			continue
		}
		pr := Probe{FromAgent: p.Up, At: p.Time, Bytes: p.IPLen}
		for j := i + 1; j < len(s.Packets); j++ {
			if q := &s.Packets[j]; q.Up != p.Up && q.PureACK() {
				pr.Bytes += q.IPLen
				break
			}
		}
		out = append(out, pr)
	}
	return out
}

func frameName(f Frame) string {
	switch f.Type {
	case 1:
		return "initiation"
	case 2:
		return "response"
	case 3:
		return "cookie reply"
	case 4:
		if f.Len == 32 {
			return "keepalive"
		}
		return "transport"
	case wire.TypeHello:
		return "hello"
	case wire.TypeError:
		return "error"
	case wire.TypeGoingAway:
		return "going-away"
	}
	return fmt.Sprintf("type %#x", f.Type)
}

// Describe lists the packets in [from, to) briefly, for the method notes.
func (s *Stream) Describe(from, to time.Time) string {
	var b strings.Builder
	for i := range s.Packets {
		p := &s.Packets[i]
		if p.Time.Before(from) || !p.Time.Before(to) {
			continue
		}
		dir := "relay→agent"
		if p.Up {
			dir = "agent→relay"
		}
		var what []string
		if p.Flags&flagSYN != 0 {
			what = append(what, "SYN")
		}
		if p.Flags&flagFIN != 0 {
			what = append(what, "FIN")
		}
		for _, fi := range p.Frames {
			what = append(what, frameName(s.Frames[fi]))
		}
		if len(what) == 0 {
			what = append(what, "ACK")
		}
		fmt.Fprintf(&b, "%s %s %d B (%s)\n", p.Time.Format("15:04:05.000"), dir, p.IPLen, strings.Join(what, "+"))
	}
	return b.String()
}
