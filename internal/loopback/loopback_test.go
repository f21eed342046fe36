package loopback

import "testing"

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
