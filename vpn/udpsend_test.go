package vpn

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// gsoBind refuses batches as the kernel refuses a GSO write larger than
// the path MTU, and takes single packets.
type gsoBind struct {
	conn.Bind
	sent [][]byte
}

func (b *gsoBind) Send(bufs [][]byte, _ conn.Endpoint) error {
	if len(bufs) > 1 {
		return fmt.Errorf("write udp: sendmmsg: %w", syscall.EMSGSIZE)
	}
	b.sent = append(b.sent, bufs...)
	return nil
}

func TestBatchesTooLargeForThePathGoOneByOne(t *testing.T) {
	b := &gsoBind{}
	bufs := [][]byte{{1}, {2}, {3}}
	if err := SendUDP(b, bufs, nil); err != nil {
		t.Fatal(err)
	}
	if len(b.sent) != 3 || b.sent[0][0] != 1 || b.sent[2][0] != 3 {
		t.Errorf("sent %v; want each of %v in order", b.sent, bufs)
	}
}

type failBind struct {
	conn.Bind
	calls int
}

func (b *failBind) Send([][]byte, conn.Endpoint) error {
	b.calls++
	return errors.New("network is unreachable")
}

func TestOtherSendErrorsAreNotRetried(t *testing.T) {
	b := &failBind{}
	if err := SendUDP(b, [][]byte{{1}, {2}}, nil); err == nil || b.calls != 1 {
		t.Errorf("err %v after %d sends; want the error after one", err, b.calls)
	}
}
