package uplink

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/hubtunnel/hubtunnel/wire"
)

// Describe says why the relay connection failed in words a hub owner can
// act on; the technical error follows in parentheses where it adds detail.
func Describe(err error) string {
	var relayErr wire.Error
	var dnsErr *net.DNSError
	var routesErr RoutesError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &routesErr):
		parts := make([]string, len(routesErr))
		for i, re := range routesErr {
			parts[i] = string(re.Route) + ": " + Describe(re.Err)
		}
		return "no way to the relay worked (" + strings.Join(parts, "; ") + ")"
	case errors.As(err, &relayErr):
		return "the relay refused this hub: " + relayErr.Message
	case errors.As(err, &dnsErr):
		return "cannot find the relay's address (DNS: " + dnsErr.Err + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "the relay is not accepting connections (is it running?)"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to the relay: is the hub's network up?"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return "the relay did not answer in time (" + err.Error() + ")"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the relay closed the connection"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "the connection to the relay was reset"
	case strings.Contains(err.Error(), "proxy"):
		return "the proxy did not let the connection through (" + err.Error() + ")"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
