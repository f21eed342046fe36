package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func frames(payloads ...[]byte) []byte {
	var b []byte
	for _, p := range payloads {
		var err error
		if b, err = AppendFrame(b, p); err != nil {
			panic(err)
		}
	}
	return b
}

func TestReaderRoundTrip(t *testing.T) {
	wg := append([]byte{4, 0, 0, 0}, bytes.Repeat([]byte{0xEE}, 1448)...)
	big := bytes.Repeat([]byte{1}, MaxFrame)
	r := NewReader(bytes.NewReader(frames(Hello{Version: 1, Key: [32]byte{7}, Software: "hubtunnel/test"}.Marshal(), wg, big)))
	got, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHello(got)
	if err != nil || h.Software != "hubtunnel/test" || h.Version != 1 || h.Key[0] != 7 {
		t.Fatalf("hello = %+v, %v", h, err)
	}
	if !r.Buffered() {
		t.Fatal("second frame should be buffered after the first read")
	}
	if got, _ := r.Next(); !bytes.Equal(got, wg) || !IsWireGuard(got) {
		t.Fatal("WireGuard frame changed in transit")
	}
	if got, _ := r.Next(); !bytes.Equal(got, big) {
		t.Fatal("largest frame changed in transit")
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("end = %v, want io.EOF", err)
	}
}

func TestReaderRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty frame", []byte{0, 0}, ErrEmptyFrame},
		{"oversized length", []byte{0xFF, 0xFF, 1, 2, 3}, ErrFrameTooLarge},
		{"just over max", []byte{0x20, 0x01}, ErrFrameTooLarge},
		{"truncated header", []byte{0x01}, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{0, 10, 1, 2, 3}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		_, err := NewReader(bytes.NewReader(tt.in)).Next()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestAppendFrameRejects(t *testing.T) {
	if _, err := AppendFrame(nil, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Errorf("empty: %v", err)
	}
	if _, err := AppendFrame(nil, make([]byte, MaxFrame+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

func TestControlFrames(t *testing.T) {
	e, err := ParseError(Error{Code: CodeVersion, Message: "upgrade the agent"}.Marshal())
	if err != nil || e.Code != CodeVersion || e.Message != "upgrade the agent" {
		t.Fatalf("error = %+v, %v", e, err)
	}
	g, err := ParseGoingAway(GoingAway{RetryAfterMillis: 1500}.Marshal())
	if err != nil || g.RetryAfterMillis != 1500 {
		t.Fatalf("going away = %+v, %v", g, err)
	}
	long := Hello{Software: strings.Repeat("x", 500)}.Marshal()
	if h, err := ParseHello(long); err != nil || len(h.Software) != maxText {
		t.Fatalf("long software not clipped to %d: %d, %v", maxText, len(h.Software), err)
	}
	bad := []struct {
		name string
		p    []byte
		fn   func([]byte) error
	}{
		{"hello short", []byte{TypeHello}, func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello no key", []byte{TypeHello, 1, 'a', 'b'}, func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello newline", helloRaw('a', '\n', 'b'), func(p []byte) error { _, err := ParseHello(p); return err }},
		{"hello invalid utf8", helloRaw(0xff, 0xfe), func(p []byte) error { _, err := ParseHello(p); return err }},
		{"error wrong type", []byte{TypeHello, 1}, func(p []byte) error { _, err := ParseError(p); return err }},
		{"going away short", []byte{TypeGoingAway, 1}, func(p []byte) error { _, err := ParseGoingAway(p); return err }},
	}
	for _, tt := range bad {
		if err := tt.fn(tt.p); !errors.Is(err, ErrBadControl) {
			t.Errorf("%s: err = %v, want ErrBadControl", tt.name, err)
		}
	}
}

// helloRaw is a Hello payload with a zero key and the given software bytes.
func helloRaw(software ...byte) []byte {
	return append(append([]byte{TypeHello, 1}, make([]byte, 32)...), software...)
}

func TestIsWireGuard(t *testing.T) {
	for _, tt := range []struct {
		p    []byte
		want bool
	}{
		{[]byte{1, 0, 0, 0}, true},
		{[]byte{4, 0, 0, 0, 9}, true},
		{[]byte{5, 0, 0, 0}, false},
		{[]byte{1, 0, 0, 1}, false},
		{[]byte{TypeHello, 1}, false},
		{[]byte{1, 0, 0}, false},
	} {
		if got := IsWireGuard(tt.p); got != tt.want {
			t.Errorf("IsWireGuard(% x) = %v", tt.p, got)
		}
	}
}

// FuzzReader feeds arbitrary streams to the frame decoder and the control
// parsers: they must never panic, never return a frame over MaxFrame, and
// what they accept must re-encode to the same bytes.
func FuzzReader(f *testing.F) {
	f.Add(frames(Hello{Version: 1, Software: "hubtunnel/0.1"}.Marshal()))
	f.Add(frames([]byte{1, 0, 0, 0, 1, 2, 3}, GoingAway{RetryAfterMillis: 500}.Marshal()))
	f.Add([]byte{0xff, 0xff, 0})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bytes.NewReader(stream))
		for i := 0; i < 1000; i++ {
			p, err := r.Next()
			if err != nil {
				return
			}
			if len(p) == 0 || len(p) > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(p))
			}
			switch p[0] {
			case TypeHello:
				if h, err := ParseHello(p); err == nil && !bytes.Equal(h.Marshal(), p) {
					t.Fatalf("hello does not round-trip")
				}
			case TypeError:
				if e, err := ParseError(p); err == nil && !bytes.Equal(e.Marshal(), p) {
					t.Fatalf("error does not round-trip")
				}
			case TypeGoingAway:
				if g, err := ParseGoingAway(p); err == nil && !bytes.Equal(g.Marshal(), p) {
					t.Fatalf("going-away does not round-trip")
				}
			}
		}
	})
}

// TestReaderDoesNotAllocate: Next runs once per WireGuard message.
func TestReaderDoesNotAllocate(t *testing.T) {
	msg := append([]byte{4, 0, 0, 0}, make([]byte, 1400)...)
	stream := bytes.Repeat(frames(msg), 200)
	src := bytes.NewReader(stream)
	r := NewReader(src)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Next(); err != nil {
			src.Reset(stream)
			r.br.Reset(src)
		}
	})
	if allocs != 0 {
		t.Fatalf("Reader.Next allocates %.1f times per frame", allocs)
	}
}
