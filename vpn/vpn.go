// Package vpn is the WireGuard machinery both ends share: keys (made on the
// machine that uses them, stored with mode 0600) and Device, the
// wireguard-go device configured through UAPI text as `wg set` would, over
// whatever tun.Device and conn.Bind the caller brings (vpn/netstack for the
// first; package uplink or the relay's agent bind for the second).
//
// It must never log a private key: PrivateKey.String hides it.
package vpn
