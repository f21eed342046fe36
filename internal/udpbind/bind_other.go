//go:build !linux

package udpbind

import (
	"net/netip"

	"golang.zx2c4.com/wireguard/conn"
)

// New returns wireguard-go's StdNetBind: the raw calls of the Linux Bind
// are Linux's.
func New() conn.Bind { return conn.NewStdNetBind() }

// SrcIP is unknown: only the Linux Bind makes Endpoints.
func (e *Endpoint) SrcIP() netip.Addr { return netip.Addr{} }
