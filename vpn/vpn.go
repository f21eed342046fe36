// Package vpn is the tunnel machinery both ends share: WireGuard keys and
// the wireguard-go device; and the agent's transports: TCPBind, a conn.Bind
// over one outbound TCP connection to the relay (a wire.Conn), dialed
// directly or through an HTTP CONNECT proxy, redialed with backoff and
// jitter, and counted; and UDPBind, plain WireGuard over UDP.
//
// It must never log a private key (PrivateKey.String hides it) and never let
// wireguard-go see a transport failure as permanent: only Close ends the
// bind's receive function.
package vpn
