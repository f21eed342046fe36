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
