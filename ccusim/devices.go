package ccusim

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
)

// Parameter operations, as in a CCU's paramset descriptions (OPERATIONS).
const (
	opRead  = 1
	opWrite = 2
	opEvent = 4
)

// iface is one of a CCU's interface processes, each behind its own XML-RPC
// port. Its devices are fixed when the Sim is made; their values live in a
// store.
type iface struct {
	service string // Sim service name: "wired", "rf", "hmip"
	name    string // the CCU's interface name, e.g. "BidCos-RF"
	serial  string // the interface's own address (INTERFACE in descriptions)
	devices []*node
	nodes   map[string]*node // by upper-case address
}

// node is a device (parent == nil) or one of its channels.
type node struct {
	address   string
	typ       string
	parent    *node
	children  []*node
	index     int    // channel number
	flags     int    // 1 visible, 2 internal
	direction int    // 0 none, 1 sender, 2 receiver
	firmware  string // devices only
	version   int
	rxMode    int      // devices only
	paramsets []string // in the CCU's order
	params    []*param // the VALUES paramset, in TAB_ORDER
}

// param describes one key of a channel's VALUES paramset.
type param struct {
	id        string
	typ       string // BOOL, FLOAT, INTEGER, ENUM, STRING, ACTION
	ops       int
	min, max  any
	def       any
	unit      string
	valueList []string // ENUM only
	initial   any
}

func boolParam(id string, ops int, initial bool) *param {
	return &param{id: id, typ: "BOOL", ops: ops, min: false, max: true, def: false, initial: initial}
}

func floatParam(id string, ops int, min, max float64, unit string, initial float64) *param {
	return &param{id: id, typ: "FLOAT", ops: ops, min: min, max: max, def: min, unit: unit, initial: initial}
}

func intParam(id string, ops int, min, max int, unit string, initial int) *param {
	return &param{id: id, typ: "INTEGER", ops: ops, min: min, max: max, def: min, unit: unit, initial: initial}
}

func enumParam(id string, ops int, values []string, initial int) *param {
	return &param{id: id, typ: "ENUM", ops: ops, min: 0, max: len(values) - 1, def: 0, valueList: values, initial: initial}
}

// catalog returns fresh simulated interfaces, ordered by service name as in
// Services.
func catalog() []*iface {
	rf := &iface{service: "rf", name: "BidCos-RF", serial: "NEQ1234567"}
	rf.addDevice("NEQ0000001", "HM-CC-RT-DN", "1.4", 10, 2|4|8,
		channel(0, "MAINTENANCE", 3, 0, []string{"MASTER", "VALUES"},
			boolParam("UNREACH", opRead|opEvent, false),
			boolParam("STICKY_UNREACH", opRead|opWrite|opEvent, false),
			boolParam("LOWBAT", opRead|opEvent, false),
			boolParam("CONFIG_PENDING", opRead|opEvent, false),
			intParam("RSSI_DEVICE", opRead|opEvent, -128, 0, "", -61)),
		channel(4, "CLIMATECONTROL_RT_TRANSCEIVER", 1, 2, []string{"LINK", "MASTER", "VALUES"},
			floatParam("SET_TEMPERATURE", opRead|opWrite|opEvent, 4.5, 30.5, "°C", 21.0),
			floatParam("ACTUAL_TEMPERATURE", opRead|opEvent, -10, 50, "°C", 20.5),
			intParam("VALVE_STATE", opRead|opEvent, 0, 99, "%", 18),
			floatParam("BATTERY_STATE", opRead|opEvent, 1.5, 4.6, "V", 2.9),
			enumParam("CONTROL_MODE", opRead|opEvent, []string{"AUTO-MODE", "MANU-MODE", "PARTY-MODE", "BOOST-MODE"}, 0)))
	rf.addDevice("NEQ0000002", "HM-LC-Sw1-Pl", "2.5", 27, 1,
		channel(0, "MAINTENANCE", 3, 0, []string{"MASTER", "VALUES"},
			boolParam("UNREACH", opRead|opEvent, false),
			boolParam("STICKY_UNREACH", opRead|opWrite|opEvent, false),
			boolParam("CONFIG_PENDING", opRead|opEvent, false),
			intParam("RSSI_DEVICE", opRead|opEvent, -128, 0, "", -54)),
		channel(1, "SWITCH", 1, 2, []string{"LINK", "MASTER", "VALUES"},
			boolParam("STATE", opRead|opWrite|opEvent, false),
			boolParam("WORKING", opRead|opEvent, false)))

	hmip := &iface{service: "hmip", name: "HmIP-RF", serial: "3014F711A0000A1B2C3D4E5F"}
	hmip.addDevice("000A1B2C3D4E5F", "HMIP-PSM", "2.8.2", 3, 1,
		channel(0, "MAINTENANCE", 3, 0, []string{"MASTER", "VALUES"},
			boolParam("UNREACH", opRead|opEvent, false),
			boolParam("CONFIG_PENDING", opRead|opEvent, false),
			boolParam("DUTY_CYCLE", opRead|opEvent, false),
			intParam("RSSI_DEVICE", opRead|opEvent, -128, 0, "", -48)),
		channel(3, "SWITCH_VIRTUAL_RECEIVER", 1, 2, []string{"LINK", "MASTER", "VALUES"},
			boolParam("STATE", opRead|opWrite|opEvent, false)))

	wired := &iface{service: "wired", name: "BidCos-Wired", serial: "LEQ1234567"}
	wired.addDevice("LEQ0000001", "HMW-IO-12-Sw7-DR", "1.1", 12, 1,
		channel(0, "MAINTENANCE", 3, 0, []string{"MASTER", "VALUES"},
			boolParam("UNREACH", opRead|opEvent, false),
			boolParam("STICKY_UNREACH", opRead|opWrite|opEvent, false),
			boolParam("CONFIG_PENDING", opRead|opEvent, false)),
		channel(13, "SWITCH", 1, 2, []string{"LINK", "MASTER", "VALUES"},
			boolParam("STATE", opRead|opWrite|opEvent, false),
			boolParam("WORKING", opRead|opEvent, false)))

	return []*iface{wired, rf, hmip}
}

func channel(index int, typ string, flags, direction int, paramsets []string, params ...*param) *node {
	return &node{index: index, typ: typ, flags: flags, direction: direction, paramsets: paramsets, params: params}
}

func (f *iface) addDevice(address, typ, firmware string, version, rxMode int, channels ...*node) {
	dev := &node{
		address: address, typ: typ, flags: 1, firmware: firmware, version: version,
		rxMode: rxMode, paramsets: []string{"MASTER"}, children: channels,
	}
	if f.nodes == nil {
		f.nodes = map[string]*node{}
	}
	f.devices = append(f.devices, dev)
	f.nodes[address] = dev
	for _, ch := range channels {
		ch.address = fmt.Sprintf("%s:%d", address, ch.index)
		ch.parent = dev
		ch.version = version
		f.nodes[ch.address] = ch
	}
}

// lookup finds a device or channel; addresses are case-insensitive as on a
// CCU.
func (f *iface) lookup(address string) (*node, error) {
	n := f.nodes[strings.ToUpper(address)]
	if n == nil {
		return nil, faultf(faultUnknownInstance, "Unknown instance: %q", address)
	}
	return n, nil
}

func (n *node) hasParamset(key string) bool {
	return slices.Contains(n.paramsets, key)
}

func (n *node) param(key string) *param {
	for _, p := range n.params {
		if p.id == key {
			return p
		}
	}
	return nil
}

// description returns the node's device description, as listDevices and
// getDeviceDescription send it.
func (f *iface) description(n *node) map[string]any {
	if n.parent == nil {
		children := make([]string, len(n.children))
		for i, ch := range n.children {
			children[i] = ch.address
		}
		return map[string]any{
			"ADDRESS":    n.address,
			"CHILDREN":   children,
			"FIRMWARE":   n.firmware,
			"FLAGS":      n.flags,
			"INTERFACE":  f.serial,
			"PARAMSETS":  n.paramsets,
			"PARENT":     "",
			"RF_ADDRESS": rfAddress(n.address),
			"ROAMING":    0,
			"RX_MODE":    n.rxMode,
			"TYPE":       n.typ,
			"UPDATABLE":  1,
			"VERSION":    n.version,
		}
	}
	return map[string]any{
		"ADDRESS":           n.address,
		"AES_ACTIVE":        0,
		"CHILDREN":          []string{},
		"DIRECTION":         n.direction,
		"FLAGS":             n.flags,
		"INDEX":             n.index,
		"LINK_SOURCE_ROLES": "",
		"LINK_TARGET_ROLES": "",
		"PARAMSETS":         n.paramsets,
		"PARENT":            n.parent.address,
		"PARENT_TYPE":       n.parent.typ,
		"TYPE":              n.typ,
		"VERSION":           n.version,
	}
}

// rfAddress derives a stable 24-bit radio address from a serial.
func rfAddress(serial string) int {
	h := 0
	for _, c := range serial {
		h = (h*31 + int(c)) & 0xffffff
	}
	return h
}

// paramDescription returns the paramset description of p, as
// getParamsetDescription sends it.
func paramDescription(p *param, tabOrder int) map[string]any {
	d := map[string]any{
		"DEFAULT":    p.def,
		"FLAGS":      1,
		"ID":         p.id,
		"MAX":        p.max,
		"MIN":        p.min,
		"OPERATIONS": p.ops,
		"TAB_ORDER":  tabOrder,
		"TYPE":       p.typ,
		"UNIT":       p.unit,
	}
	if p.valueList != nil {
		d["VALUE_LIST"] = p.valueList
	}
	return d
}

// convert checks that v suits p and returns it in p's Go type; an int is
// accepted for a FLOAT, as a CCU does.
func (p *param) convert(v any) (any, error) {
	bad := func(want string) error {
		return faultf(faultUnknownValue, "Unknown paramset value: %s wants %s, got %s", p.id, want, xmlrpcType(v))
	}
	switch p.typ {
	case "BOOL", "ACTION":
		b, ok := v.(bool)
		if !ok {
			return nil, bad("a boolean")
		}
		return b, nil
	case "FLOAT":
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case int:
			f = float64(x)
		default:
			return nil, bad("a double")
		}
		lo, hi := p.min.(float64), p.max.(float64)
		if math.IsNaN(f) || f < lo || f > hi {
			return nil, faultf(faultUnknownValue, "Unknown paramset value: %s must be between %v and %v, got %v", p.id, lo, hi, f)
		}
		return f, nil
	case "INTEGER", "ENUM":
		n, ok := v.(int)
		if !ok {
			return nil, bad("an int")
		}
		lo, hi := p.min.(int), p.max.(int)
		if n < lo || n > hi {
			return nil, faultf(faultUnknownValue, "Unknown paramset value: %s must be between %d and %d, got %d", p.id, lo, hi, n)
		}
		return n, nil
	case "STRING":
		s, ok := v.(string)
		if !ok {
			return nil, bad("a string")
		}
		return s, nil
	}
	return nil, faultf(faultFailure, "Failure: %s has unknown type %s", p.id, p.typ)
}

// xmlrpcType names the XML-RPC type of a decoded value, for messages.
func xmlrpcType(v any) string {
	switch v.(type) {
	case int:
		return "an int"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case float64:
		return "a double"
	case []byte:
		return "base64"
	case []any:
		return "an array"
	case map[string]any:
		return "a struct"
	}
	return fmt.Sprintf("%T", v)
}

// store holds the current values of every channel of a Sim.
type store struct {
	mu     sync.Mutex
	values map[string]map[string]any // channel address → key → value
}

func newStore(ifaces []*iface) *store {
	s := &store{values: map[string]map[string]any{}}
	for _, f := range ifaces {
		for _, dev := range f.devices {
			for _, ch := range dev.children {
				vals := map[string]any{}
				for _, p := range ch.params {
					vals[p.id] = p.initial
				}
				s.values[ch.address] = vals
			}
		}
	}
	return s
}

func (s *store) get(n *node, key string) (any, error) {
	p := n.param(key)
	if p == nil {
		return nil, faultf(faultUnknownValue, "Unknown paramset value: %s has no %q", n.address, key)
	}
	if p.ops&opRead == 0 {
		return nil, faultf(faultNotSupported, "Operation not supported: %s is not readable", key)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.values[n.address][key], nil
}

// set checks and converts every value before it changes any: a bad value
// leaves the channel as it was.
func (s *store) set(n *node, values map[string]any) error {
	conv := make(map[string]any, len(values))
	for key, v := range values {
		p := n.param(key)
		if p == nil {
			return faultf(faultUnknownValue, "Unknown paramset value: %s has no %q", n.address, key)
		}
		if p.ops&opWrite == 0 {
			return faultf(faultNotSupported, "Operation not supported: %s is read-only", key)
		}
		cv, err := p.convert(v)
		if err != nil {
			return err
		}
		conv[key] = cv
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.Copy(s.values[n.address], conv)
	return nil
}

// paramset returns a copy of the readable values of a channel.
func (s *store) paramset(n *node) map[string]any {
	out := map[string]any{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range n.params {
		if p.ops&opRead != 0 {
			out[p.id] = s.values[n.address][p.id]
		}
	}
	return out
}
