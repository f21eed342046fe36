// Package uplink is how the agent reaches the relay, as conn.Binds for
// wireguard-go: TCPBind carries WireGuard over the agent's one outbound TCP
// connection (a wire.Conn), dialed directly or through an HTTP CONNECT
// proxy by Dialer, redialed with capped backoff and jitter, and counted;
// UDPBind is plain WireGuard over UDP with a bounded inbound window.
// Describe turns a connection error into words a hub owner can act on.
//
// It must never let wireguard-go see a transport failure as permanent:
// only Close ends a bind's receive function, and a Send while no
// connection is up fails softly with vpn.ErrNotConnected.
package uplink
