// Package udpbind is WireGuard's UDP bind (conn.Bind) for the agent's
// transport "udp" and the relay's UDP port: on Linux with socket calls the
// Go runtime is not told about (Bind), elsewhere wireguard-go's StdNetBind.
package udpbind
