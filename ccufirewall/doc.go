// Package ccufirewall reads the firewall settings a HomeMatic CCU's owner
// chose (WebUI > Settings > Control panel > Firewall) and answers, for a TCP
// port of the hub and a client address, whether the CCU lets a client with
// that address in from its LAN. The agent applies the answer to tunnel
// connections, so that remote users get the rights of the owner's LAN, never
// those of the hub itself.
//
// # Why the agent must apply it itself
//
// The CCU enforces these settings with iptables on INPUT, and its first rule
// accepts everything that arrives on the loopback interface ("-i lo -j
// ACCEPT"). Linux delivers every connection from the hub to any of its own
// addresses, its LAN address included, over lo. So whatever address the
// agent dials from, the CCU's own firewall never sees the agent's
// connections: the agent has to make the decision the CCU would have made
// for the remote user. (Choosing a non-loopback source, package portmap's
// Forwarder.LocalSource, is the other half: lighttpd's authentication and
// its denial of *.exe on port 80 exempt exactly 127.0.0.1, ::ffff:127.0.0.1
// and ::1.)
//
// # Where the settings come from
//
// Every source below was read at the commit named; nothing of it is copied.
//
//   - jens-maus/RaspberryMatic, buildroot-external/overlay/base/lib/libfirewall.tcl
//     (commit 678e6ab166b2a1882963c9a30bf47b7b8cda4fd4; eQ-3's library, as
//     the CCU3 firmware ships it): the file /etc/config/firewall.conf
//     (Firewall_CONFIG_FILE), how it is read (Firewall_loadConfiguration)
//     and written (Firewall_saveConfiguration), the factory defaults when it
//     is missing, the services and their ports (Firewall_SERVICES), the UDP
//     ports among them (Firewall_isUdpPort), and the iptables rules of each
//     mode (Firewall_configureFirewallMostOpen, …Restrictive).
//   - the same repository's buildroot-external/package/occu/occu.mk: /etc/config
//     is a link to /usr/local/etc/config, so the file lives in
//     /usr/local/etc/config/firewall.conf and survives firmware updates.
//   - …/overlay/base/lib/libsecuritylevel.tcl: the security levels of the
//     first-start wizard as access levels (LOW = MOST_OPEN with XML-RPC full and
//     script restricted; MEDIUM = RESTRICTIVE, all restricted; HIGH =
//     RESTRICTIVE, all none).
//   - …/overlay/base/etc/lighttpd/conf.d/{webui,webui_remoteapi}.conf and
//     …/overlay/WebUI/etc/lighttpd/conf.d/auth.conf: what the hub treats as
//     itself (remote address exactly 127.0.0.1, ::ffff:127.0.0.1 or ::1).
//   - eq-3/occu, WebUI/www/api/methods/firewall/{get,set}configuration.tcl and
//     WebUI/www/webui/webui.js (FirewallConfigDialog, isIPAddressValid), commit
//     3a1be871b9f748e5b8acb034386dbb456347eca4: the dialog's three levels
//     ("full", "restricted", "none"), its two modes, and that an address
//     entry may be an address, a prefix or a host name.
//   - OpenCCU/OpenCCU, buildroot-external/overlay/base/lib/libfirewall.tcl
//     (commit ac9bebe258887fd58508207d096cba0a6c33aafe): the same file and
//     format; it also limits full-access ports to local source networks unless
//     /etc/config/AllowExternalAccess exists. A LAN client is local by
//     definition, so that gate changes nothing for the decision made here.
//
// # The file
//
//	MODE = RESTRICTIVE                  (or MOST_OPEN)
//	IPs = 192.168.178.0/24 fc00::/7     (the "restricted" ranges, a Tcl list)
//	USERPORTS = 8080 8443               (ports the owner opened; optional)
//	[SERVICE XMLRPC]
//	Id = XMLRPC
//	Ports = 2000 2001 2002 2010 9292 42000 42001 42010 49292
//	Access = restricted                 (full, restricted or none)
//
// Lines starting with '#' and blank lines are skipped. Services are XMLRPC
// (the XML-RPC APIs), REGA (the script engine: 8181, 48181 and ReGa's
// XML-RPC 1999, 41999), NEOSERVER (mediola) and SNMP; their ports are the
// file's plus the library's defaults, as Firewall_loadConfiguration merges
// them. UDP-only ports (161, 1901, 1902, 5987, 10000, 48899, 49880) do not
// count for TCP.
//
// # The decision, for a TCP port and a client address
//
//  1. A port in USERPORTS is open (the CCU adds those rules before the
//     services', to let the owner override them).
//  2. A port of a service: "full" is open, "none" is closed, "restricted" is
//     open when the address is in one of the IPs (IPv4 entries for IPv4
//     clients, IPv6 entries for IPv6 ones). A port listed by two services
//     must pass both.
//  3. Any other port: in RESTRICTIVE mode only 80 and 443 (the WebUI), 9293
//     and 9294 (the HmIP update server) are open (SSH's 22 only when enabled
//     on the CCU, which this package does not read: closed here); in MOST_OPEN
//     every port is open except 8182, 8183, 22 and the internal 3xxxx
//     ports behind the XMLRPC and REGA services.
//
// # Strictness and safe defaults
//
//   - No file: the CCU's factory defaults (Defaults): RESTRICTIVE, every
//     service "none", the library's default IPs.
//   - A file that cannot be read, is larger than MaxSize, does not end in a
//     newline (it is being written: Tcl truncates and rewrites it in place),
//     has a line that is not a comment, a [section] or key = value, an
//     unknown key, an unknown mode or access level, a bad port, a section
//     without Id or Access, or an Id twice: an error, and the caller denies
//     (Lockdown: only the WebUI ports open). Where the CCU's own reader is
//     lenient (it would treat an unknown access level as full in MOST_OPEN
//     mode), this package refuses instead.
//   - An IPs entry the CCU's iptables could not use as it stands (a host
//     name, which iptables resolves once when the rules are applied, a
//     prefix like /33, an IPv4-mapped or zoned address) matches nothing and
//     is reported in Settings.Ignored. That is what the CCU does with a rule
//     iptables rejects, and it can only narrow access.
//
// This package never writes the file and never changes the CCU's own
// firewall; it only reads and decides.
package ccufirewall
