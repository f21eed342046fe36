package wire

// ALPN is the TLS application protocol an agent asks for when it reaches
// the relay over TLS (its agent port, or the public port 443 it shares with
// browsers). After it come the frames of this package, as over TCP.
const ALPN = "hubtunnel/1"

// UpgradePath is where an agent asks for an HTTP/1.1 upgrade to ALPN when
// TLS negotiated no ALPN, as when a TLS-inspecting proxy in between makes
// its own connection to the relay:
//
//	GET /.hubtunnel/agent HTTP/1.1
//	Host: <relay host>
//	Connection: Upgrade
//	Upgrade: hubtunnel/1
//
// The relay answers 101 Switching Protocols, and frames follow.
const UpgradePath = "/.hubtunnel/agent"
