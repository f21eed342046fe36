package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/wire"
)

// Describe says why the relay connection failed in words a hub owner can
// act on; the technical error follows in parentheses where it adds detail.
func Describe(err error) string { return Explain(err).Text }

// Explain is Describe's sentence (Text) with its kind (one of
// localapi.Kinds, "" when the error fits none) and the technical detail
// (the relay's address, the DNS answer, the relay's own words), for the
// panel to say in the owner's language.
func Explain(err error) localapi.Words {
	var relayErr wire.Error
	var dnsErr *net.DNSError
	var routesErr RoutesError
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidErr x509.CertificateInvalidError
	w := func(kind, detail, text string) localapi.Words {
		return localapi.Words{Kind: kind, Detail: detail, Text: text}
	}
	switch {
	case err == nil:
		return localapi.Words{}
	case errors.As(err, &routesErr):
		return explainRoutes(routesErr)
	case localapi.WordsOf(err).Kind == "proxy":
		return w("proxy", err.Error(), "the proxy did not let the connection through ("+err.Error()+")")
	case errors.As(err, &relayErr):
		return w(localapi.KindRelayRefused+":"+strconv.Itoa(int(relayErr.Code)), relayErr.Message, "the relay refused this hub: "+relayErr.Message)
	case errors.As(err, &dnsErr):
		return w("dns", "DNS: "+dnsErr.Err, "cannot find the relay's address (DNS: "+dnsErr.Err+")")
	case errors.Is(err, syscall.ECONNREFUSED):
		return w("refused", address(err), "the relay is not accepting connections (is it running?)")
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return w("unreachable", address(err), "no route to the relay: is the hub's network up?")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return w("timeout", err.Error(), "the relay did not answer in time ("+err.Error()+")")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return w("closed", "", "the relay closed the connection")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return w("reset", "", "the connection to the relay was reset")
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr), errors.As(err, &invalidErr):
		return w("tls-cert", err.Error(), "the relay's TLS certificate is not valid for it ("+err.Error()+")")
	case strings.Contains(err.Error(), "proxy"):
		return w("proxy", err.Error(), "the proxy did not let the connection through ("+err.Error()+")")
	}
	return w("", "", err.Error())
}

// explainRoutes explains a failure of every route: with their common kind
// when they all failed alike (the details side by side), else as
// "routes" with each route's English sentence.
func explainRoutes(re RoutesError) localapi.Words {
	parts := make([]string, len(re))
	details := make([]string, len(re))
	kind := ""
	for i, r := range re {
		e := Explain(r.Err)
		parts[i] = string(r.Route) + ": " + e.Text
		details[i] = string(r.Route)
		if e.Detail != "" {
			details[i] += ": " + e.Detail
		}
		switch {
		case i == 0:
			kind = e.Kind
		case kind != e.Kind:
			kind = ""
		}
	}
	text := "no way to the relay worked (" + strings.Join(parts, "; ") + ")"
	if kind == "" {
		return localapi.Words{Kind: "routes", Detail: strings.Join(parts, "; "), Text: text}
	}
	return localapi.Words{Kind: kind, Detail: strings.Join(details, "; "), Text: text}
}

// address is the remote address a dial failed for, or "".
func address(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Addr != nil {
		return oe.Addr.String()
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
