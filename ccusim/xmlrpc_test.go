package ccusim

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	when := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)
	tests := []struct {
		name string
		in   any
		want any // what decoding gives back; nil means in
	}{
		{"int", 42, nil},
		{"negative int", -2147483648, nil},
		{"int64 in range", int64(7), 7},
		{"int32", int32(-7), -7},
		{"large int as i8", 1 << 40, nil},
		{"true", true, nil},
		{"false", false, nil},
		{"string", "hello", nil},
		{"empty string", "", nil},
		{"markup string", `<a href="x">&amp;</a> 'q'`, nil},
		{"whitespace string", "  two\nlines\r\n\ttab  ", nil},
		{"unicode string", "Grüße, 温度 °C", nil},
		{"double", 21.5, nil},
		{"double zero", 0.0, nil},
		{"double tiny", 1e-300, nil},
		{"double huge", -1.7976931348623157e308, nil},
		{"float32", float32(0.5), 0.5},
		{"dateTime", when, nil},
		{"dateTime zone", when.In(time.FixedZone("CET", 3600)), when},
		{"base64", []byte{0, 1, 2, 0xfe, 0xff}, nil},
		{"base64 empty", []byte{}, nil},
		{"base64 long", bytes.Repeat([]byte("0123456789"), 100), nil},
		{"array", []any{1, "two", 3.5, false}, nil},
		{"empty array", []any{}, nil},
		{"string array", []string{"a", "b"}, []any{"a", "b"}},
		{"struct", map[string]any{"ADDRESS": "NEQ0000001:4", "INDEX": 4, "<k&>": true}, nil},
		{"empty struct", map[string]any{}, nil},
		{"nested", []any{map[string]any{"a": []any{[]any{}, map[string]any{"b": []byte("x")}}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			// As a call's params.
			doc, err := encodeMethodCall("m.x", []any{tt.in, "after"})
			if err != nil {
				t.Fatalf("encodeMethodCall: %v", err)
			}
			method, params, err := decodeMethodCall(bytes.NewReader(doc))
			if err != nil {
				t.Fatalf("decodeMethodCall(%s): %v", doc, err)
			}
			if method != "m.x" || len(params) != 2 || params[1] != "after" {
				t.Fatalf("decodeMethodCall = %q, %#v", method, params)
			}
			if !equalValue(params[0], want) {
				t.Errorf("call param = %#v, want %#v\n%s", params[0], want, doc)
			}
			// As a response.
			doc, err = encodeResponse(tt.in)
			if err != nil {
				t.Fatalf("encodeResponse: %v", err)
			}
			got, err := decodeMethodResponse(bytes.NewReader(doc))
			if err != nil {
				t.Fatalf("decodeMethodResponse(%s): %v", doc, err)
			}
			if !equalValue(got, want) {
				t.Errorf("response = %#v, want %#v\n%s", got, want, doc)
			}
		})
	}
}

// equalValue compares decoded values; times by instant.
func equalValue(a, b any) bool {
	if ta, ok := a.(time.Time); ok {
		tb, ok := b.(time.Time)
		return ok && ta.Equal(tb)
	}
	return reflect.DeepEqual(a, b)
}

func TestFaultRoundTrip(t *testing.T) {
	doc := encodeFault(&Fault{Code: -5, String: "Unknown paramset value <x>"})
	_, err := decodeMethodResponse(bytes.NewReader(doc))
	var f *Fault
	if !errors.As(err, &f) || f.Code != -5 || f.String != "Unknown paramset value <x>" {
		t.Fatalf("decodeMethodResponse(fault) = %v, want fault -5", err)
	}
}

// TestDecodeForms checks what other XML-RPC implementations send: untyped
// values, whitespace, comments, other encodings.
func TestDecodeForms(t *testing.T) {
	call := func(value string) string {
		return "<?xml version=\"1.0\"?>\n<methodCall>\n <methodName>m</methodName>\n <params>\n  <param>\n   <value>" +
			value + "</value>\n  </param>\n </params>\n</methodCall>\n"
	}
	tests := []struct {
		name string
		doc  string
		want any
	}{
		{"untyped string", call("plain text"), "plain text"},
		{"untyped keeps spaces", call("  sp  "), "  sp  "},
		{"empty value", call(""), ""},
		{"empty string element", call("<string/>"), ""},
		{"i4 with spaces", call("<i4> 17 </i4>"), 17},
		{"int plus sign", call("<int>+3</int>"), 3},
		{"i8", call("<i8>-9000000000</i8>"), -9000000000},
		{"boolean word", call("<boolean>true</boolean>"), true},
		{"double int form", call("<double>20</double>"), 20.0},
		{"double exponent", call("<double>1.5e3</double>"), 1500.0},
		{"whitespace around type", call("\n\t<boolean>0</boolean>\n"), false},
		{"comment in value", call("<!-- c --><i4>1</i4>"), 1},
		{"comment in string", call("<string>a<!-- c -->b</string>"), "ab"},
		{"entities", call("<string>&lt;&amp;&gt;&#228;&#x20AC;</string>"), "<&>ä€"},
		{"cdata", call("<string><![CDATA[<raw>]]></string>"), "<raw>"},
		{"dateTime dashes", call("<dateTime.iso8601>2024-01-02T03:04:05</dateTime.iso8601>"), time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"dateTime zone", call("<dateTime.iso8601>20240102T03:04:05+01:00</dateTime.iso8601>"), time.Date(2024, 1, 2, 2, 4, 5, 0, time.UTC)},
		{"base64 with newlines", call("<base64>AAEC\n/v8=\n</base64>"), []byte{0, 1, 2, 0xfe, 0xff}},
		{"array whitespace", call("<array>\n<data>\n<value>a</value>\n<value><i4>1</i4></value>\n</data>\n</array>"), []any{"a", 1}},
		{"struct duplicate member", call("<struct><member><name>k</name><value>1</value></member><member><name>k</name><value>2</value></member></struct>"), map[string]any{"k": "2"}},
		{"latin1", "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><methodCall><methodName>m</methodName><params><param><value><string>Gr\xfc\xdfe \xb0C</string></value></param></params></methodCall>", "Grüße °C"},
		{"trailing comment", call("x") + "<!-- end -->\n", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, params, err := decodeMethodCall(strings.NewReader(tt.doc))
			if err != nil {
				t.Fatalf("decodeMethodCall: %v", err)
			}
			if len(params) != 1 || !equalValue(params[0], tt.want) {
				t.Errorf("params = %#v, want [%#v]", params, tt.want)
			}
		})
	}

	t.Run("no params", func(t *testing.T) {
		method, params, err := decodeMethodCall(strings.NewReader("<methodCall><methodName> system.listMethods </methodName></methodCall>"))
		if err != nil || method != "system.listMethods" || params == nil || len(params) != 0 {
			t.Fatalf("decodeMethodCall = %q, %#v, %v", method, params, err)
		}
	})
}

func TestDecodeMalformed(t *testing.T) {
	call := func(value string) string {
		return "<methodCall><methodName>m</methodName><params><param><value>" + value + "</value></param></params></methodCall>"
	}
	tests := []struct{ name, doc string }{
		{"empty", ""},
		{"not xml", "hello"},
		{"truncated", "<methodCall><methodName>m</methodName><params><param><value><i4>1"},
		{"wrong root", "<methodResponse></methodResponse>"},
		{"no methodName", "<methodCall><params/></methodCall>"},
		{"empty methodName", "<methodCall><methodName> </methodName></methodCall>"},
		{"element in methodName", "<methodCall><methodName><b/></methodName></methodCall>"},
		{"mismatched tags", "<methodCall><methodName>m</methodCall></methodName>"},
		{"bad int", call("<i4>twelve</i4>")},
		{"int overflow", call("<i4>2147483648</i4>")},
		{"bad boolean", call("<boolean>2</boolean>")},
		{"bad double", call("<double>1,5</double>")},
		{"nan double", call("<double>NaN</double>")},
		{"inf double", call("<double>+Inf</double>")},
		{"hex double", call("<double>0x1p4</double>")},
		{"bad dateTime", call("<dateTime.iso8601>yesterday</dateTime.iso8601>")},
		{"bad base64", call("<base64>!!!</base64>")},
		{"nil", call("<nil/>")},
		{"unknown type", call("<float>1</float>")},
		{"text and type", call("x<i4>1</i4>")},
		{"two types", call("<i4>1</i4><i4>2</i4>")},
		{"array without data", call("<array><value>1</value></array>")},
		{"array junk", call("<array><data><i4>1</i4></data></array>")},
		{"struct without name", call("<struct><member><value>1</value></member></struct>")},
		{"struct without value", call("<struct><member><name>a</name></member></struct>")},
		{"struct junk", call("<struct>text</struct>")},
		{"param without value", "<methodCall><methodName>m</methodName><params><param>1</param></params></methodCall>"},
		{"text in params", "<methodCall><methodName>m</methodName><params>junk</params></methodCall>"},
		{"two roots", call("1") + "<methodCall/>"},
		{"trailing text", call("1") + "junk"},
		{"doctype", `<!DOCTYPE methodCall [<!ENTITY x "y">]>` + call("&x;")},
		{"undefined entity", call("<string>&nope;</string>")},
		{"unknown encoding", `<?xml version="1.0" encoding="EBCDIC"?>` + call("1")},
		{"too deep", call(strings.Repeat("<array><data><value>", maxDepth+2) + strings.Repeat("</value></data></array>", maxDepth+2))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, p, err := decodeMethodCall(strings.NewReader(tt.doc)); err == nil {
				t.Errorf("decodeMethodCall(%q) = %q, %#v, want an error", tt.doc, m, p)
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	deep := any("x")
	for range maxDepth + 2 {
		deep = []any{deep}
	}
	for _, v := range []any{nil, math.NaN(), math.Inf(1), struct{}{}, map[string]int{}, deep} {
		if doc, err := encodeResponse(v); err == nil {
			t.Errorf("encodeResponse(%#v) = %s, want an error", v, doc)
		}
	}
}

// FuzzDecodeMethodCall checks that no input panics the decoder and that
// whatever it accepts encodes and decodes to the same values.
func FuzzDecodeMethodCall(f *testing.F) {
	f.Add([]byte("<methodCall><methodName>m</methodName><params><param><value><i4>1</i4></value></param></params></methodCall>"))
	f.Add([]byte("<methodCall><methodName>m</methodName><params><param><value><struct><member><name>a</name><value><array><data><value>x</value></data></array></value></member></struct></value></param></params></methodCall>"))
	f.Add([]byte("<methodCall><methodName>m</methodName><params><param><value><base64>AAE=</base64></value></param><param><value><dateTime.iso8601>20240101T00:00:00</dateTime.iso8601></value></param></params></methodCall>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		method, params, err := decodeMethodCall(bytes.NewReader(doc))
		if err != nil {
			return
		}
		again, err := encodeMethodCall(method, params)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", params, err)
		}
		m2, p2, err := decodeMethodCall(bytes.NewReader(again))
		if err != nil || m2 != strings.TrimSpace(method) || !reflect.DeepEqual(p2, params) {
			t.Fatalf("round trip: %q %#v → %q %#v, %v", method, params, m2, p2, err)
		}
	})
}
