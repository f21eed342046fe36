package ccusim

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests here run Python's xmlrpc.client, a real and widely used XML-RPC
// implementation, against the Sim and the codec.

// python runs a Python script with args and stdin and returns its stdout.
func python(t *testing.T, script string, stdin []byte, args ...string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: skipping the test against Python's xmlrpc.client")
	}
	path := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{path}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3 %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(path), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

const pyClient = `
import sys, xmlrpc.client
from xmlrpc.client import Fault, MultiCall, ServerProxy

p = ServerProxy(sys.argv[1])

devs = p.listDevices()
by = {d["ADDRESS"]: d for d in devs}
assert "NEQ0000002:1" in by and "NEQ0000001:4" in by, sorted(by)
assert by["NEQ0000001:4"]["TYPE"] == "CLIMATECONTROL_RT_TRANSCEIVER", by["NEQ0000001:4"]
assert by["NEQ0000001:4"]["PARENT"] == "NEQ0000001"
assert "NEQ0000001:4" in by["NEQ0000001"]["CHILDREN"]
assert isinstance(by["NEQ0000001"]["VERSION"], int)

assert p.setValue("NEQ0000002:1", "STATE", True) == ""
assert p.getValue("NEQ0000002:1", "STATE") is True
p.setValue("NEQ0000001:4", "SET_TEMPERATURE", 22.5)
assert p.getValue("NEQ0000001:4", "SET_TEMPERATURE") == 22.5
assert p.getParamset("NEQ0000001:4", "VALUES")["SET_TEMPERATURE"] == 22.5

def fault(code, f, *args):
    try:
        f(*args)
    except Fault as e:
        assert e.faultCode == code, (code, e)
        return
    raise AssertionError("no fault from %r%r" % (f, args))

fault(-5, p.setValue, "NEQ0000002:1", "STATE", "on")
fault(-2, p.getValue, "NEQ9999999:1", "STATE")
fault(-1, p.noSuchMethod)

mc = MultiCall(p)
mc.getValue("NEQ0000002:1", "STATE")
mc.setValue("NEQ0000002:1", "STATE", False)
mc.getValue("NEQ0000002:1", "STATE")
mc.getValue("NEQ0000002:1", "NOPE")
r = mc()
assert r[0] is True and r[1] == "" and r[2] is False, r.results
try:
    r[3]
    raise AssertionError("no fault in multicall result")
except Fault as e:
    assert e.faultCode == -5, e

assert "system.multicall" in p.system.listMethods()
assert p.ping("python") is True
assert p.init("http://127.0.0.1:1/", "python") == ""
print("OK")
`

func TestPythonClient(t *testing.T) {
	s := startSim(t, Config{})
	out := python(t, pyClient, nil, "http://"+s.Addr("rf")+"/")
	if strings.TrimSpace(out) != "OK" {
		t.Fatalf("python client said %q", out)
	}
	// What Python set is what Go sees.
	hc := client(t)
	if v := mustRPC(t, hc, s, "rf", "getValue", "NEQ0000001:4", "SET_TEMPERATURE"); v != 22.5 {
		t.Errorf("SET_TEMPERATURE after the Python client = %#v", v)
	}
}

const pyCodec = `
import sys, datetime, xmlrpc.client
from xmlrpc.client import Binary, DateTime, dumps, loads

values = (7, -2147483648, True, False, "plain", "<&> 'q' \"d\"\n\ttab", "Grüße °C", 21.5, -0.125,
          DateTime("20240229T23:59:58"), Binary(b"\x00\x01\xfe\xff" * 50), [1, "a", [], {}],
          {"ADDRESS": "NEQ0000001:4", "nested": {"list": [True, 2.0]}})

if sys.argv[1] == "dumps":
    sys.stdout.write(dumps(values, methodname="m.x"))
else:
    got, method = loads(sys.stdin.buffer.read(), use_builtin_types=True)
    want = list(values)
    want[9] = datetime.datetime(2024, 2, 29, 23, 59, 58)
    want[10] = b"\x00\x01\xfe\xff" * 50
    assert list(got[0]) == want, (got[0], want)
    print("OK")
`

// pyValues is what pyCodec's values are in Go.
func pyValues() []any {
	return []any{7, -2147483648, true, false, "plain", "<&> 'q' \"d\"\n\ttab", "Grüße °C", 21.5, -0.125,
		time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC), bytes.Repeat([]byte{0, 1, 0xfe, 0xff}, 50),
		[]any{1, "a", []any{}, map[string]any{}},
		map[string]any{"ADDRESS": "NEQ0000001:4", "nested": map[string]any{"list": []any{true, 2.0}}}}
}

func TestPythonCodec(t *testing.T) {
	t.Run("python encodes", func(t *testing.T) {
		doc := python(t, pyCodec, nil, "dumps")
		method, params, err := decodeMethodCall(strings.NewReader(doc))
		if err != nil {
			t.Fatalf("decodeMethodCall: %v\n%s", err, doc)
		}
		want := pyValues()
		if method != "m.x" || len(params) != len(want) {
			t.Fatalf("decoded %q with %d params, want m.x with %d", method, len(params), len(want))
		}
		for i := range want {
			if !equalValue(params[i], want[i]) {
				t.Errorf("param %d = %#v, want %#v", i, params[i], want[i])
			}
		}
	})
	t.Run("python decodes", func(t *testing.T) {
		doc, err := encodeResponse(pyValues())
		if err != nil {
			t.Fatal(err)
		}
		if out := python(t, pyCodec, doc, "loads"); strings.TrimSpace(out) != "OK" {
			t.Fatalf("python said %q", out)
		}
	})
}
