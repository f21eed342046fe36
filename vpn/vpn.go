// Package vpn is the tunnel machinery both ends share: WireGuard keys, the
// wireguard-go device, and the agent's transport: a conn.Bind that carries
// WireGuard over one outbound TCP connection to the relay (framed as in
// package wire), dialed directly or through an HTTP CONNECT proxy, redialed
// with backoff and jitter, and counted.
//
// It must never log a private key (PrivateKey.String hides it) and never let
// wireguard-go see a transport failure as permanent: only Close ends the
// bind's receive function.
package vpn
