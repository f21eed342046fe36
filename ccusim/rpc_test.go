package ccusim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// rpc calls method on a service of s.
func rpc(t *testing.T, hc *http.Client, s *Sim, service, method string, params ...any) (any, error) {
	t.Helper()
	return Call(context.Background(), hc, "http://"+s.Addr(service)+"/", method, params...)
}

func mustRPC(t *testing.T, hc *http.Client, s *Sim, service, method string, params ...any) any {
	t.Helper()
	v, err := rpc(t, hc, s, service, method, params...)
	if err != nil {
		t.Fatalf("%s %s%v: %v", service, method, params, err)
	}
	return v
}

func wantFault(t *testing.T, err error, code int) {
	t.Helper()
	var f *Fault
	if !errors.As(err, &f) {
		t.Fatalf("err = %v, want a fault %d", err, code)
	}
	if f.Code != code {
		t.Fatalf("fault = %d %q, want code %d", f.Code, f.String, code)
	}
}

func TestListDevices(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	tests := []struct {
		service string
		address string // a channel that must be listed
		typ     string
		parent  string
	}{
		{"rf", "NEQ0000001:4", "CLIMATECONTROL_RT_TRANSCEIVER", "HM-CC-RT-DN"},
		{"rf", "NEQ0000002:1", "SWITCH", "HM-LC-Sw1-Pl"},
		{"hmip", "000A1B2C3D4E5F:3", "SWITCH_VIRTUAL_RECEIVER", "HMIP-PSM"},
		{"wired", "LEQ0000001:13", "SWITCH", "HMW-IO-12-Sw7-DR"},
	}
	for _, tt := range tests {
		list, ok := mustRPC(t, hc, s, tt.service, "listDevices").([]any)
		if !ok {
			t.Fatalf("%s listDevices is not an array", tt.service)
		}
		byAddr := map[string]map[string]any{}
		for _, e := range list {
			d := e.(map[string]any)
			byAddr[d["ADDRESS"].(string)] = d
		}
		ch := byAddr[tt.address]
		if ch == nil {
			t.Fatalf("%s listDevices lacks %s", tt.service, tt.address)
		}
		devAddr := strings.Split(tt.address, ":")[0]
		if ch["TYPE"] != tt.typ || ch["PARENT"] != devAddr || ch["PARENT_TYPE"] != tt.parent {
			t.Errorf("%s: TYPE %v PARENT %v PARENT_TYPE %v", tt.address, ch["TYPE"], ch["PARENT"], ch["PARENT_TYPE"])
		}
		if !slices.Contains(ch["PARAMSETS"].([]any), any("VALUES")) {
			t.Errorf("%s: PARAMSETS = %v", tt.address, ch["PARAMSETS"])
		}
		dev := byAddr[devAddr]
		if dev == nil || dev["TYPE"] != tt.parent || dev["PARENT"] != "" {
			t.Fatalf("%s: device entry %v", devAddr, dev)
		}
		if !slices.Contains(dev["CHILDREN"].([]any), any(tt.address)) {
			t.Errorf("%s: CHILDREN = %v", devAddr, dev["CHILDREN"])
		}
		for _, key := range []string{"VERSION", "FLAGS", "FIRMWARE", "INTERFACE", "RX_MODE"} {
			if _, ok := dev[key]; !ok {
				t.Errorf("%s lacks %s", devAddr, key)
			}
		}
	}
}

func TestSetGetValue(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000002:1", "STATE"); v != false {
		t.Fatalf("initial STATE = %#v", v)
	}
	if v := mustRPC(t, hc, s, "rf", "setValue", "NEQ0000002:1", "STATE", true); v != "" {
		t.Errorf("setValue = %#v, want empty string", v)
	}
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000002:1", "STATE"); v != true {
		t.Errorf("STATE after setValue = %#v, want true", v)
	}
	// Lower-case addresses work as on a CCU; an int is taken for a double.
	mustRPC(t, hc, s, "rf", "setValue", "neq0000001:4", "SET_TEMPERATURE", 23)
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000001:4", "SET_TEMPERATURE"); v != 23.0 {
		t.Errorf("SET_TEMPERATURE = %#v, want 23.0", v)
	}
	mustRPC(t, hc, s, "rf", "setValue", "NEQ0000001:4", "SET_TEMPERATURE", 19.5)
	ps := mustRPC(t, hc, s, "rf", "getParamset", "NEQ0000001:4", "VALUES").(map[string]any)
	if ps["SET_TEMPERATURE"] != 19.5 || ps["ACTUAL_TEMPERATURE"] != 20.5 || ps["CONTROL_MODE"] != 0 {
		t.Errorf("getParamset = %v", ps)
	}
	// Each interface has its own devices, all in one store.
	mustRPC(t, hc, s, "hmip", "setValue", "000A1B2C3D4E5F:3", "STATE", true)
	mustRPC(t, hc, s, "wired", "setValue", "LEQ0000001:13", "STATE", true)
	if v := mustRPC(t, hc, s, "hmip", "getValue", "000A1B2C3D4E5F:3", "STATE"); v != true {
		t.Errorf("HmIP STATE = %#v", v)
	}
	_, err := rpc(t, hc, s, "rf", "getValue", "000A1B2C3D4E5F:3", "STATE")
	wantFault(t, err, faultUnknownInstance)

	mustRPC(t, hc, s, "rf", "putParamset", "NEQ0000002:1", "VALUES", map[string]any{"STATE": false})
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000002:1", "STATE"); v != false {
		t.Errorf("STATE after putParamset = %#v, want false", v)
	}
	// A bad member changes nothing.
	_, err = rpc(t, hc, s, "rf", "putParamset", "NEQ0000002:1", "VALUES", map[string]any{"STATE": true, "NOPE": 1})
	wantFault(t, err, faultUnknownValue)
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000002:1", "STATE"); v != false {
		t.Errorf("STATE after a failed putParamset = %#v, want false", v)
	}
}

func TestFaults(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	tests := []struct {
		name   string
		method string
		params []any
		code   int
	}{
		{"wrong type bool", "setValue", []any{"NEQ0000002:1", "STATE", "on"}, faultUnknownValue},
		{"wrong type int for bool", "setValue", []any{"NEQ0000002:1", "STATE", 1}, faultUnknownValue},
		{"wrong type double", "setValue", []any{"NEQ0000001:4", "SET_TEMPERATURE", "21"}, faultUnknownValue},
		{"out of range", "setValue", []any{"NEQ0000001:4", "SET_TEMPERATURE", 99.0}, faultUnknownValue},
		{"unknown address", "setValue", []any{"NEQ9999999:1", "STATE", true}, faultUnknownInstance},
		{"unknown key", "setValue", []any{"NEQ0000002:1", "LEVEL", 1.0}, faultUnknownValue},
		{"read-only key", "setValue", []any{"NEQ0000001:4", "ACTUAL_TEMPERATURE", 30.0}, faultNotSupported},
		{"device has no values", "getValue", []any{"NEQ0000002", "STATE"}, faultUnknownValue},
		{"getValue unknown key", "getValue", []any{"NEQ0000002:1", "NOPE"}, faultUnknownValue},
		{"getValue unknown address", "getValue", []any{"XYZ", "STATE"}, faultUnknownInstance},
		{"getValue too few args", "getValue", []any{"NEQ0000002:1"}, faultFailure},
		{"address not a string", "getValue", []any{1, "STATE"}, faultFailure},
		{"unknown paramset", "getParamset", []any{"NEQ0000002:1", "FOO"}, faultUnknownParamset},
		{"device VALUES", "getParamset", []any{"NEQ0000002", "VALUES"}, faultUnknownParamset},
		{"putParamset not a struct", "putParamset", []any{"NEQ0000002:1", "VALUES", "x"}, faultFailure},
		{"unknown method", "deleteDevice", []any{"NEQ0000002", 0}, faultFailure},
		{"multicall not an array", "system.multicall", []any{"x"}, faultFailure},
		{"init without url", "init", []any{}, faultFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rpc(t, hc, s, "rf", tt.method, tt.params...)
			wantFault(t, err, tt.code)
		})
	}
}

func TestSystemMethods(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	list := mustRPC(t, hc, s, "hmip", "system.listMethods").([]any)
	for _, m := range list {
		_, err := rpc(t, hc, s, "hmip", m.(string))
		var f *Fault
		if errors.As(err, &f) && strings.Contains(f.String, "unknown method") {
			t.Errorf("listed method %s is unknown", m)
		}
	}
	if v := mustRPC(t, hc, s, "rf", "system.methodHelp", "getValue"); v != "" {
		t.Errorf("methodHelp = %#v", v)
	}
	if v := mustRPC(t, hc, s, "rf", "ping", "me"); v != true {
		t.Errorf("ping = %#v", v)
	}
	if v := mustRPC(t, hc, s, "rf", "init", "http://127.0.0.1:1/", "me"); v != "" {
		t.Errorf("init = %#v", v)
	}
	if v := mustRPC(t, hc, s, "rf", "init", "http://127.0.0.1:1/"); v != "" {
		t.Errorf("init (unregister) = %#v", v)
	}
	desc := mustRPC(t, hc, s, "rf", "getParamsetDescription", "NEQ0000001:4", "VALUES").(map[string]any)
	st := desc["SET_TEMPERATURE"].(map[string]any)
	if st["TYPE"] != "FLOAT" || st["MIN"] != 4.5 || st["OPERATIONS"] != 7 {
		t.Errorf("SET_TEMPERATURE description = %v", st)
	}
	d := mustRPC(t, hc, s, "rf", "getDeviceDescription", "NEQ0000001").(map[string]any)
	if d["TYPE"] != "HM-CC-RT-DN" {
		t.Errorf("getDeviceDescription = %v", d)
	}
}

func TestMulticall(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	call := func(method string, params ...any) any {
		return map[string]any{"methodName": method, "params": params}
	}
	res := mustRPC(t, hc, s, "rf", "system.multicall", []any{
		call("setValue", "NEQ0000002:1", "STATE", true),
		call("getValue", "NEQ0000002:1", "STATE"),
		call("getValue", "NEQ0000002:1", "NOPE"),
		call("system.multicall", []any{}),
		"not a struct",
		map[string]any{"methodName": "ping"},
		call("getParamset", "NEQ0000001:4", "VALUES"),
	}).([]any)
	if len(res) != 7 {
		t.Fatalf("multicall returned %d results: %v", len(res), res)
	}
	if !equalValue(res[0], []any{""}) || !equalValue(res[1], []any{true}) {
		t.Errorf("results 0, 1 = %#v, %#v", res[0], res[1])
	}
	for i := 2; i <= 5; i++ {
		f, ok := res[i].(map[string]any)
		if !ok || f["faultCode"] == nil || f["faultString"] == nil {
			t.Errorf("result %d = %#v, want a fault struct", i, res[i])
		}
	}
	if f := res[2].(map[string]any); f["faultCode"] != faultUnknownValue {
		t.Errorf("result 2 = %v, want fault -5", f)
	}
	if ps, ok := res[6].([]any); !ok || ps[0].(map[string]any)["SET_TEMPERATURE"] != 21.0 {
		t.Errorf("result 6 = %#v", res[6])
	}
}

// post sends a raw body to the rf port.
func post(t *testing.T, hc *http.Client, s *Sim, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := hc.Post("http://"+s.Addr("rf")+"/RPC2", "text/xml", body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestMalformedRequests(t *testing.T) {
	s := startSim(t, Config{})
	hc := client(t)
	for _, body := range []string{
		"",
		"garbage",
		"<methodCall><methodName>getValue</methodName><params><param><value><i4>x</i4></value></param></params></methodCall>",
		strings.Repeat("<methodCall>", 10000),
		"<methodCall><methodName>ping</methodName><params><param><value><string>a</string></value></param></params>",
	} {
		resp, b := post(t, hc, s, strings.NewReader(body))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %s for %.40q", resp.Status, body)
		}
		_, err := decodeMethodResponse(bytes.NewReader(b))
		wantFault(t, err, faultFailure)
	}

	// Too large: a fault, not a read of everything.
	big := "<methodCall><methodName>ping</methodName><params><param><value><string>" +
		strings.Repeat("x", maxRequestBytes) + "</string></value></param></params></methodCall>"
	_, b := post(t, hc, s, strings.NewReader(big))
	_, err := decodeMethodResponse(bytes.NewReader(b))
	wantFault(t, err, faultFailure)
	if !strings.Contains(err.Error(), "larger") {
		t.Errorf("fault for a large body = %v", err)
	}

	// GET is not XML-RPC.
	resp, err := hc.Get("http://" + s.Addr("rf") + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET status = %s", resp.Status)
	}

	// The server still answers.
	if v := mustRPC(t, hc, s, "rf", "ping", "x"); v != true {
		t.Errorf("ping after bad requests = %#v", v)
	}
}
