package testbed

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"time"
)

// LoopbackClient is an HTTP client that connects to 127.0.0.1 at a URL's
// port whatever host the URL names, so that "demo.localhost:10080" reaches
// the relay with that Host header (and TLS server name; the relay's
// self-signed certificate is accepted). keepAlive keeps one idle
// connection per host; without it every request has its own connection.
// It never uses a proxy.
func LoopbackClient(keepAlive bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			_, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			return d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", port))
		},
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 1,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Get fetches url with c and returns the status and the body.
func Get(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
