package uplink

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// tcpiOptTimestamps is TCPI_OPT_TIMESTAMPS of tcpi_options: the connection
// carries the 12-byte timestamp option in every segment.
const tcpiOptTimestamps = 1

// readSocket reads TCP_INFO (see SocketCounters for what is counted).
func readSocket(rc syscall.RawConn, v6 bool) (SocketCounters, bool) {
	var info *unix.TCPInfo
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		return SocketCounters{}, false
	}
	hdr := uint64(20 + 20)
	if v6 {
		hdr = 40 + 20
	}
	if info.Options&tcpiOptTimestamps != 0 {
		hdr += 12
	}
	sent := info.Bytes_sent
	if sent == 0 {
		sent = info.Bytes_acked // kernels before 4.19 have no tcpi_bytes_sent
	}
	return SocketCounters{
		Sent:          sent + uint64(info.Segs_out)*hdr,
		Received:      info.Bytes_received + uint64(info.Segs_in)*hdr,
		SegsOut:       uint64(info.Segs_out),
		SegsIn:        uint64(info.Segs_in),
		Retransmitted: info.Bytes_retrans,
		OK:            true,
	}, true
}
