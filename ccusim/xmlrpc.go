package ccusim

// A small XML-RPC codec (http://xmlrpc.com/spec.md), enough for what a CCU
// and its apps exchange.
//
// XML-RPC values map to Go values as follows, both ways:
//
//	<int>, <i4>, <i8>    int (an int outside int32 is encoded as <i8>)
//	<boolean>            bool
//	<string>, untyped    string
//	<double>             float64 (NaN and ±Inf cannot be encoded)
//	<dateTime.iso8601>   time.Time (no zone on the wire: encoded in UTC, decoded as UTC)
//	<base64>             []byte
//	<array>              []any ([]string is accepted when encoding)
//	<struct>             map[string]any (members encoded in key order)
//
// <nil/> is not part of the spec and is rejected, as a CCU does.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Fault is an XML-RPC fault: the error a method call returns on the wire.
// Codes follow the CCU's interface processes:
//
//	-1 Failure (bad arguments, unknown method, malformed request)
//	-2 Unknown instance (no such device or channel address)
//	-3 Unknown paramset
//	-5 Unknown paramset value (no such key, or a value the key cannot take)
//	-6 Operation not supported (key not readable or not writable)
type Fault struct {
	Code   int
	String string
}

func (f *Fault) Error() string {
	return fmt.Sprintf("XML-RPC fault %d: %s", f.Code, f.String)
}

// Fault codes as a CCU's interface processes send them.
const (
	faultFailure         = -1
	faultUnknownInstance = -2
	faultUnknownParamset = -3
	faultUnknownValue    = -5
	faultNotSupported    = -6
)

func faultf(code int, format string, args ...any) *Fault {
	return &Fault{Code: code, String: fmt.Sprintf(format, args...)}
}

const (
	// maxDepth bounds nested arrays and structs, in both directions.
	maxDepth = 64
	// maxResponseBytes bounds what Call reads from a server.
	maxResponseBytes = 16 << 20
	// dateTimeLayout is the format the spec's example and Python's
	// xmlrpc.client use.
	dateTimeLayout = "20060102T15:04:05"
)

// Call makes one XML-RPC call to url with hc (nil means
// http.DefaultClient) and returns the decoded result. A fault the server
// returns comes back as a *Fault error. It is a client for tests and demos
// that talk to a Sim, directly or through a tunnel.
func Call(ctx context.Context, hc *http.Client, url, method string, params ...any) (any, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := encodeMethodCall(method, params)
	if err != nil {
		return nil, fmt.Errorf("ccusim.Call: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ccusim.Call: %w", err)
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ccusim.Call: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("ccusim.Call: %s: HTTP status %s", method, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("ccusim.Call: %s: %w", method, err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("ccusim.Call: %s: response larger than %d bytes", method, maxResponseBytes)
	}
	v, err := decodeMethodResponse(bytes.NewReader(data))
	if err != nil {
		var f *Fault
		if errors.As(err, &f) {
			return nil, f
		}
		return nil, fmt.Errorf("ccusim.Call: %s: %w", method, err)
	}
	return v, nil
}

// encodeMethodCall returns the XML document for a call of method with params.
func encodeMethodCall(method string, params []any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodCall><methodName>")
	escapeText(&b, method)
	b.WriteString("</methodName><params>")
	for i, p := range params {
		b.WriteString("<param><value>")
		if err := encodeValue(&b, p, 0); err != nil {
			return nil, fmt.Errorf("param %d: %w", i, err)
		}
		b.WriteString("</value></param>")
	}
	b.WriteString("</params></methodCall>\n")
	return b.Bytes(), nil
}

// encodeResponse returns the XML document answering a call with v.
func encodeResponse(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodResponse><params><param><value>")
	if err := encodeValue(&b, v, 0); err != nil {
		return nil, err
	}
	b.WriteString("</value></param></params></methodResponse>\n")
	return b.Bytes(), nil
}

// encodeFault returns the XML document answering a call with f.
func encodeFault(f *Fault) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodResponse><fault><value>")
	// A struct of an int and a string always encodes.
	encodeValue(&b, faultStruct(f), 0)
	b.WriteString("</value></fault></methodResponse>\n")
	return b.Bytes()
}

func faultStruct(f *Fault) map[string]any {
	return map[string]any{"faultCode": f.Code, "faultString": f.String}
}

func escapeText(b *bytes.Buffer, s string) {
	xml.EscapeText(b, []byte(s))
}

func encodeValue(b *bytes.Buffer, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("values nested deeper than %d", maxDepth)
	}
	switch v := v.(type) {
	case int:
		return encodeInt(b, int64(v))
	case int32:
		return encodeInt(b, int64(v))
	case int64:
		return encodeInt(b, v)
	case bool:
		if v {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case string:
		b.WriteString("<string>")
		escapeText(b, v)
		b.WriteString("</string>")
	case float64:
		return encodeDouble(b, v)
	case float32:
		return encodeDouble(b, float64(v))
	case time.Time:
		b.WriteString("<dateTime.iso8601>")
		b.WriteString(v.UTC().Format(dateTimeLayout))
		b.WriteString("</dateTime.iso8601>")
	case []byte:
		b.WriteString("<base64>")
		b.WriteString(base64.StdEncoding.EncodeToString(v))
		b.WriteString("</base64>")
	case []string:
		b.WriteString("<array><data>")
		for _, e := range v {
			b.WriteString("<value><string>")
			escapeText(b, e)
			b.WriteString("</string></value>")
		}
		b.WriteString("</data></array>")
	case []any:
		b.WriteString("<array><data>")
		for i, e := range v {
			b.WriteString("<value>")
			if err := encodeValue(b, e, depth+1); err != nil {
				return fmt.Errorf("array element %d: %w", i, err)
			}
			b.WriteString("</value>")
		}
		b.WriteString("</data></array>")
	case map[string]any:
		b.WriteString("<struct>")
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString("<member><name>")
			escapeText(b, k)
			b.WriteString("</name><value>")
			if err := encodeValue(b, v[k], depth+1); err != nil {
				return fmt.Errorf("struct member %q: %w", k, err)
			}
			b.WriteString("</value></member>")
		}
		b.WriteString("</struct>")
	default:
		return fmt.Errorf("cannot encode %T as an XML-RPC value", v)
	}
	return nil
}

func encodeInt(b *bytes.Buffer, n int64) error {
	tag := "i4"
	if n < math.MinInt32 || n > math.MaxInt32 {
		tag = "i8"
	}
	b.WriteString("<" + tag + ">")
	b.WriteString(strconv.FormatInt(n, 10))
	b.WriteString("</" + tag + ">")
	return nil
}

func encodeDouble(b *bytes.Buffer, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("cannot encode %v as an XML-RPC double", f)
	}
	b.WriteString("<double>")
	// The spec allows no exponent; 'f' with -1 is exact and exponent-free.
	b.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
	b.WriteString("</double>")
	return nil
}

// decodeMethodCall parses an XML-RPC methodCall document.
func decodeMethodCall(r io.Reader) (method string, params []any, err error) {
	p := newParser(r)
	if err := p.expectStart("methodCall"); err != nil {
		return "", nil, err
	}
	if err := p.expectStart("methodName"); err != nil {
		return "", nil, err
	}
	method, err = p.text()
	if err != nil {
		return "", nil, err
	}
	method = strings.TrimSpace(method)
	if method == "" {
		return "", nil, errors.New("empty methodName")
	}
	t, err := p.next()
	if err != nil {
		return "", nil, err
	}
	if se, ok := t.(xml.StartElement); ok {
		if se.Name.Local != "params" {
			return "", nil, fmt.Errorf("unexpected <%s> in methodCall", se.Name.Local)
		}
		if params, err = p.params(); err != nil {
			return "", nil, err
		}
		if t, err = p.next(); err != nil {
			return "", nil, err
		}
	}
	if err := isEnd(t, "methodCall"); err != nil {
		return "", nil, err
	}
	if err := p.expectEOF(); err != nil {
		return "", nil, err
	}
	if params == nil {
		params = []any{}
	}
	return method, params, nil
}

// decodeMethodResponse parses an XML-RPC methodResponse document. A fault
// response is returned as a *Fault error.
func decodeMethodResponse(r io.Reader) (any, error) {
	p := newParser(r)
	if err := p.expectStart("methodResponse"); err != nil {
		return nil, err
	}
	se, err := p.nextStart()
	if err != nil {
		return nil, err
	}
	var result any
	var fault *Fault
	switch se.Name.Local {
	case "params":
		params, err := p.params()
		if err != nil {
			return nil, err
		}
		if len(params) != 1 {
			return nil, fmt.Errorf("methodResponse has %d params, want 1", len(params))
		}
		result = params[0]
	case "fault":
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := p.value(0)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		code, okc := m["faultCode"].(int)
		str, oks := m["faultString"].(string)
		if !ok || !okc || !oks {
			return nil, errors.New("fault is not a struct of faultCode and faultString")
		}
		fault = &Fault{Code: code, String: str}
		if err := p.expectEnd("fault"); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unexpected <%s> in methodResponse", se.Name.Local)
	}
	if err := p.expectEnd("methodResponse"); err != nil {
		return nil, err
	}
	if err := p.expectEOF(); err != nil {
		return nil, err
	}
	if fault != nil {
		return nil, fault
	}
	return result, nil
}

// parser reads XML-RPC documents token by token; it never recurses deeper
// than maxDepth.
type parser struct {
	d *xml.Decoder
}

func newParser(r io.Reader) *parser {
	d := xml.NewDecoder(r)
	d.Strict = true
	d.CharsetReader = charsetReader
	return &parser{d: d}
}

// charsetReader accepts the encodings HomeMatic software declares: UTF-8,
// US-ASCII and ISO-8859-1 (which a CCU itself uses).
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1":
		return &latin1Reader{r: input}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", charset)
}

// latin1Reader converts ISO-8859-1 bytes to UTF-8.
type latin1Reader struct {
	r   io.Reader
	buf []byte // converted bytes not yet returned
	raw [512]byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	if len(l.buf) == 0 {
		n, err := l.r.Read(l.raw[:])
		for _, c := range l.raw[:n] {
			l.buf = utf8.AppendRune(l.buf, rune(c))
		}
		if len(l.buf) == 0 {
			return 0, err
		}
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

// token returns the next token that matters: no comments, processing
// instructions or (outside values) whitespace. Directives (DTDs) are
// refused.
func (p *parser) token() (xml.Token, error) {
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.Comment, xml.ProcInst:
			continue
		case xml.Directive:
			return nil, errors.New("DTDs and directives are not allowed")
		case xml.CharData:
			return t, nil
		default:
			return t, nil
		}
	}
}

// next returns the next element start or end, skipping whitespace. Other
// text is an error.
func (p *parser) next() (xml.Token, error) {
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		if cd, ok := t.(xml.CharData); ok {
			if len(bytes.TrimSpace(cd)) != 0 {
				return nil, fmt.Errorf("unexpected text %q", truncate(string(cd)))
			}
			continue
		}
		return t, nil
	}
}

func (p *parser) nextStart() (xml.StartElement, error) {
	t, err := p.next()
	if err != nil {
		return xml.StartElement{}, err
	}
	se, ok := t.(xml.StartElement)
	if !ok {
		return xml.StartElement{}, fmt.Errorf("unexpected %s", describe(t))
	}
	return se, nil
}

func (p *parser) expectStart(name string) error {
	se, err := p.nextStart()
	if err != nil {
		return fmt.Errorf("want <%s>: %w", name, err)
	}
	if se.Name.Local != name {
		return fmt.Errorf("want <%s>, got <%s>", name, se.Name.Local)
	}
	return nil
}

func (p *parser) expectEnd(name string) error {
	t, err := p.next()
	if err != nil {
		return fmt.Errorf("want </%s>: %w", name, err)
	}
	return isEnd(t, name)
}

func isEnd(t xml.Token, name string) error {
	if ee, ok := t.(xml.EndElement); !ok || ee.Name.Local != name {
		return fmt.Errorf("want </%s>, got %s", name, describe(t))
	}
	return nil
}

// expectEOF checks that nothing but whitespace, comments and processing
// instructions follows the document element.
func (p *parser) expectEOF() error {
	for {
		t, err := p.d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := t.(type) {
		case xml.Comment, xml.ProcInst:
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return errors.New("text after the document element")
			}
		default:
			return fmt.Errorf("%s after the document element", describe(t))
		}
	}
}

// text reads character data up to the end of the current element; a child
// element is an error.
func (p *parser) text() (string, error) {
	var sb strings.Builder
	for {
		t, err := p.token()
		if err != nil {
			return "", err
		}
		switch t := t.(type) {
		case xml.CharData:
			sb.Write(t)
		case xml.EndElement:
			return sb.String(), nil
		default:
			return "", fmt.Errorf("unexpected %s in text", describe(t))
		}
	}
}

// params reads <param><value>…</value></param>* up to </params>.
func (p *parser) params() ([]any, error) {
	params := []any{}
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if ee, ok := t.(xml.EndElement); ok && ee.Name.Local == "params" {
			return params, nil
		}
		if se, ok := t.(xml.StartElement); !ok || se.Name.Local != "param" {
			return nil, fmt.Errorf("want <param>, got %s", describe(t))
		}
		if err := p.expectStart("value"); err != nil {
			return nil, err
		}
		v, err := p.value(0)
		if err != nil {
			return nil, fmt.Errorf("param %d: %w", len(params), err)
		}
		params = append(params, v)
		if err := p.expectEnd("param"); err != nil {
			return nil, err
		}
	}
}

// value reads the inside of a <value> element, whose start has been read,
// and its end.
func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("values nested deeper than %d", maxDepth)
	}
	var text strings.Builder
	for {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		switch t := t.(type) {
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			// <value>text</value> is a string.
			return text.String(), nil
		case xml.StartElement:
			if strings.TrimSpace(text.String()) != "" {
				return nil, fmt.Errorf("text %q before <%s> in a value", truncate(text.String()), t.Name.Local)
			}
			v, err := p.typed(t.Name.Local, depth)
			if err != nil {
				return nil, err
			}
			if err := p.expectEnd("value"); err != nil {
				return nil, err
			}
			return v, nil
		}
	}
}

// typed reads a typed value element whose start has been read, and its end.
func (p *parser) typed(tag string, depth int) (any, error) {
	switch tag {
	case "array":
		return p.array(depth)
	case "struct":
		return p.structure(depth)
	}
	s, err := p.text()
	if err != nil {
		return nil, fmt.Errorf("<%s>: %w", tag, err)
	}
	switch tag {
	case "int", "i4":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("bad <%s> %q", tag, truncate(s))
		}
		return int(n), nil
	case "i8":
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad <i8> %q", truncate(s))
		}
		return int(n), nil
	case "boolean":
		switch strings.TrimSpace(s) {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("bad <boolean> %q", truncate(s))
	case "string":
		return s, nil
	case "double":
		ts := strings.TrimSpace(s)
		f, err := strconv.ParseFloat(ts, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(ts, "xXpP_") {
			return nil, fmt.Errorf("bad <double> %q", truncate(s))
		}
		return f, nil
	case "dateTime.iso8601":
		return parseDateTime(strings.TrimSpace(s))
	case "base64":
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, fmt.Errorf("bad <base64>: %w", err)
		}
		return b, nil
	case "nil":
		return nil, errors.New("<nil/> is not supported")
	}
	return nil, fmt.Errorf("unknown value type <%s>", tag)
}

// parseDateTime accepts the spec's form and the usual ISO 8601 variants.
func parseDateTime(s string) (time.Time, error) {
	for _, layout := range []string{
		dateTimeLayout,
		"2006-01-02T15:04:05",
		"20060102T15:04:05Z07:00",
		"2006-01-02T15:04:05Z07:00",
		"20060102T150405",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad <dateTime.iso8601> %q", truncate(s))
}

func (p *parser) array(depth int) (any, error) {
	if err := p.expectStart("data"); err != nil {
		return nil, fmt.Errorf("<array>: %w", err)
	}
	arr := []any{}
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if ee, ok := t.(xml.EndElement); ok && ee.Name.Local == "data" {
			break
		}
		if se, ok := t.(xml.StartElement); !ok || se.Name.Local != "value" {
			return nil, fmt.Errorf("want <value> in <data>, got %s", describe(t))
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	if err := p.expectEnd("array"); err != nil {
		return nil, err
	}
	return arr, nil
}

func (p *parser) structure(depth int) (any, error) {
	m := map[string]any{}
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if ee, ok := t.(xml.EndElement); ok && ee.Name.Local == "struct" {
			return m, nil
		}
		if se, ok := t.(xml.StartElement); !ok || se.Name.Local != "member" {
			return nil, fmt.Errorf("want <member> in <struct>, got %s", describe(t))
		}
		if err := p.expectStart("name"); err != nil {
			return nil, err
		}
		name, err := p.text()
		if err != nil {
			return nil, fmt.Errorf("member name: %w", err)
		}
		if err := p.expectStart("value"); err != nil {
			return nil, fmt.Errorf("member %q: %w", truncate(name), err)
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, fmt.Errorf("member %q: %w", truncate(name), err)
		}
		m[name] = v
		if err := p.expectEnd("member"); err != nil {
			return nil, err
		}
	}
}

func describe(t xml.Token) string {
	switch t := t.(type) {
	case xml.StartElement:
		return "<" + t.Name.Local + ">"
	case xml.EndElement:
		return "</" + t.Name.Local + ">"
	case xml.CharData:
		return fmt.Sprintf("text %q", truncate(string(t)))
	}
	return fmt.Sprintf("%T", t)
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
