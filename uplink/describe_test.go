package uplink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/hubtunnel/hubtunnel/localapi"
	"github.com/hubtunnel/hubtunnel/wire"
)

// TestExplainKinds: each class of relay failure has its kind, one the
// panel knows (localapi.Kinds), and the detail a hub owner needs to act:
// the address refused, the DNS answer, the relay's own words.
func TestExplainKinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, refused := (&Dialer{}).Dial(context.Background(), closed)

	srv := httptest.NewTLSServer(nil)
	defer srv.Close()
	_, untrusted := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{ServerName: "relay.example"})

	_, proxyRefused := (&Dialer{Proxy: &url.URL{Scheme: "http", Host: closed}}).Dial(context.Background(), "relay.example:443")

	unreachable := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 443}, Err: syscall.ENETUNREACH}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name       string
		err        error
		kind       string
		detailHas  string
		textPrefix string
	}{
		{"refused", refused, "refused", closed, "the relay is not accepting connections"},
		{"unreachable", unreachable, "unreachable", "192.0.2.1:443", "no route to the relay"},
		{"dns", &net.DNSError{Err: "no such host", Name: "relay.example"}, "dns", "no such host", "cannot find the relay's address"},
		{"timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), "timeout", "deadline", "the relay did not answer in time"},
		{"closed", io.ErrUnexpectedEOF, "closed", "", "the relay closed the connection"},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, "reset", "", "the connection to the relay was reset"},
		{"proxy refused", proxyRefused, "proxy", "127.0.0.1", "the proxy did not let the connection through"},
		{"proxy", errors.New("proxy 127.0.0.1:3128: CONNECT relay:443 refused: 403 Forbidden"), "proxy", "403 Forbidden", "the proxy did not let the connection through"},
		{"certificate", fmt.Errorf("TLS with %s: %w", srv.Listener.Addr(), untrusted), "tls-cert", "certificate", "the relay's TLS certificate is not valid"},
		{"relay refused", wire.Error{Code: wire.CodeWrongKey, Message: "wrong relay key"}, "relay-refused:3", "wrong relay key", "the relay refused this hub: wrong relay key"},
		{"all routes alike", RoutesError{{RouteTCP, refused}, {RouteTLS, refused}}, "refused", "tcp: " + closed + "; tls: " + closed, "no way to the relay worked"},
		{"routes unlike", RoutesError{{RouteTCP, refused}, {RouteTLS, io.EOF}}, "routes", "tls: the relay closed the connection", "no way to the relay worked"},
		{"unknown", errors.New("something new"), "", "", "something new"},
		{"canceled is not a kind", ctx.Err(), "", "", "context canceled"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := Explain(tt.err)
			if w.Kind != tt.kind || !strings.Contains(w.Detail, tt.detailHas) || !strings.HasPrefix(w.Text, tt.textPrefix) {
				t.Errorf("Explain(%v) = %+v\nwant kind %q, detail with %q, text %q…", tt.err, w, tt.kind, tt.detailHas, tt.textPrefix)
			}
			if w.Text != Describe(tt.err) {
				t.Errorf("Explain's text %q is not Describe's %q", w.Text, Describe(tt.err))
			}
			if w.Kind != "" && !slices.Contains(localapi.Kinds, w.Kind) {
				t.Errorf("kind %q is not in localapi.Kinds: the panel cannot say it", w.Kind)
			}
		})
	}
}
