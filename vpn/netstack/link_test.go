package netstack

import (
	"bytes"
	"testing"
)

// An inbound packet reaches gVisor byte for byte, whether it fits one
// chunk or is split into its head and the rest (packetData).
func TestPacketDataKeepsEveryByte(t *testing.T) {
	for _, n := range []int{1, headChunk, 2 * headChunk, 2*headChunk + 1, 1420, 8000, 65503} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 7)
		}
		b := packetData(p)
		if got := b.Flatten(); !bytes.Equal(got, p) {
			t.Errorf("%d bytes in, %d out, or other bytes", n, len(got))
		}
		b.Release()
	}
}
