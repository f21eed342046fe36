package loopback

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// The relay's public ports land outside the ephemeral range, where an
// outgoing connection could take one between the probe and the bind.
func TestOffsetKeepsPublicPortsOutOfTheEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	var p Ports
	for range 20 {
		off, err := p.Offset()
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range publicPorts() {
			if off+port > 65535 {
				t.Fatalf("offset %d puts port %d at %d, past 65535", off, port, off+port)
			}
			if off+port >= lo && off+port <= hi {
				t.Errorf("offset %d puts public port %d at %d, inside the ephemeral range %d–%d", off, port, off+port, lo, hi)
			}
		}
	}
}

// A port another process of the tests was handed is not handed out here
// until that process ends: the packages of `go test ./...` run side by
// side, each with its own Ports.
func TestPortsOfAnotherProcessAreNotHandedOut(t *testing.T) {
	if os.Getenv("HT_LOOPBACK_CHILD") != "" {
		var p Ports
		for range 20 {
			port, err := p.Free()
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Println(port)
		}
		io.Copy(io.Discard, os.Stdin) // hold them until the parent closes stdin
		os.Exit(0)
	}
	if claimFile() == nil {
		t.Skip("no shared lock file here: ports are not claimed across processes")
	}
	child := exec.Command(os.Args[0], "-test.run", "^TestPortsOfAnotherProcessAreNotHandedOut$")
	child.Env = append(os.Environ(), "HT_LOOPBACK_CHILD=1")
	stdin, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var theirs []int
	sc := bufio.NewScanner(out)
	for len(theirs) < 20 && sc.Scan() {
		port, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("the other process: %q", sc.Text())
		}
		theirs = append(theirs, port)
	}
	if len(theirs) < 20 {
		t.Fatalf("the other process handed out %d ports, want 20", len(theirs))
	}
	for _, port := range theirs {
		if claim(port) {
			t.Errorf("port %d, which the other process holds, could be claimed here", port)
			unclaim(port)
		}
	}
	stdin.Close()
	if err := child.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	// Its claims ended with it.
	for _, port := range theirs {
		if !claim(port) {
			t.Errorf("port %d still claimed after the other process ended", port)
		}
		unclaim(port)
	}
}

// Free's ports, like Offset's, stay out of the ephemeral range: the
// relay's debug listener once lost its port to an outgoing connection
// between the probe and the bind.
func TestFreeKeepsPortsOutOfTheEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	inBand := freeBand(lo, hi) != nil
	var p Ports
	seen := map[int]bool{}
	for range 50 {
		port, err := p.Free()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		if inBand && port >= lo && port <= hi {
			t.Errorf("port %d is in the ephemeral range %d–%d", port, lo, hi)
		}
		if !canListen(port) {
			t.Errorf("port %d was handed out but cannot be bound", port)
		}
	}
}

func TestFreeBandAvoidsTheRange(t *testing.T) {
	for _, c := range []struct {
		lo, hi int
		none   bool // fewer than 1000 ports outside the range: the kernel picks
	}{
		{32768, 60999, false}, // Linux's default
		{1024, 5000, false},   // below the band
		{20000, 30000, false},
		{10000, 65000, true},
		{1024, 65535, true},
	} {
		draw := freeBand(c.lo, c.hi)
		if (draw == nil) != c.none {
			t.Errorf("range %d–%d: draw %v, want none %v", c.lo, c.hi, draw != nil, c.none)
			continue
		}
		if draw == nil {
			continue
		}
		low, high := false, false
		for range 10000 {
			port := draw()
			if port < 10000 || port > 65535 || (port >= c.lo && port <= c.hi) {
				t.Fatalf("range %d–%d: drew %d", c.lo, c.hi, port)
			}
			low = low || port < c.lo
			high = high || port > c.hi
		}
		if c.lo > 10000 && c.hi < 65535 && !(low && high) {
			t.Errorf("range %d–%d: 10,000 draws all on one side (below %v, above %v)", c.lo, c.hi, low, high)
		}
	}
}
