package store

import (
	"fmt"
	"strings"
)

// Ports is a set of the port map's parts a grant or token opens, kept as a
// bit set in the database.
type Ports uint8

const (
	PortWebUI  Ports = 1 << iota // 80, 443: the WebUI
	PortXMLRPC                   // 2000–2010, 443x: XML-RPC and Homegear
	PortScript                   // 8181, 44381: the script engine (root on the hub: its own grant)

	PortsAll = PortWebUI | PortXMLRPC | PortScript
)

var portNames = []struct {
	p    Ports
	name string
}{{PortWebUI, "webui"}, {PortXMLRPC, "xmlrpc"}, {PortScript, "script"}}

// String is the set as ParsePorts reads it: "webui,xmlrpc", or "none".
func (p Ports) String() string {
	var parts []string
	for _, n := range portNames {
		if p&n.p != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// Has reports whether p includes all of q.
func (p Ports) Has(q Ports) bool { return q != 0 && p&q == q }

// ParsePorts reads "webui", "xmlrpc", "script", "all", or a comma-separated
// list of them.
func ParsePorts(s string) (Ports, error) {
	var p Ports
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "all" {
			p |= PortsAll
			continue
		}
		found := false
		for _, n := range portNames {
			if f == n.name {
				p |= n.p
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("ports %q: want webui, xmlrpc, script or all (comma-separated)", s)
		}
	}
	return p, nil
}
