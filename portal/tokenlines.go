package portal

import (
	"strconv"
	"strings"

	"github.com/hubtunnel/hubtunnel/store"
)

// The public TLS ports of the port map (portmap) the copy-paste lines use,
// before the relay's port offset.
const (
	portWebUITLS  = 443   // WebUI
	portRFTLS     = 4431  // XML-RPC RF (the hub's 2001)
	portHmIPTLS   = 4434  // XML-RPC HmIP (the hub's 2010)
	portScriptTLS = 44381 // script engine (the hub's 8181)
)

// tokenUser is the user name the lines put before a token: the relay takes
// any, and this one tells a reader what the password is.
const tokenUser = "hubtunnel"

// newToken is a token just made, with the lines to use it.
type newToken struct {
	Secret string
	Hub    string
	Lines  []tokenLine
}

type tokenLine struct {
	ID    string // for the element id token-line-ID
	Title string
	Text  string
}

// newTokenView writes the copy-paste lines for a new token, one per kind
// of client, for what the token reaches. The token goes as HTTP Basic
// password (design-auth.md): in the URL's user info for xmlrpc.client, as
// -u for curl, as the password field of Home Assistant and ioBroker.
func (h *handler) newTokenView(l *text, secret string, t store.Token) *newToken {
	hubHost := t.Hub + "." + h.c.Domain
	port := func(p int) string { return strconv.Itoa(p + h.c.PortOffset) }
	auth := tokenUser + ":" + secret
	nt := &newToken{Secret: secret, Hub: t.Hub}
	add := func(id, title string, lines ...string) {
		nt.Lines = append(nt.Lines, tokenLine{ID: id, Title: title, Text: strings.Join(lines, "\n")})
	}
	if t.Ports&store.PortXMLRPC != 0 {
		rf, hmip := port(portRFTLS), port(portHmIPTLS)
		python := func(host string) string {
			return `python3 -c 'import xmlrpc.client; print(xmlrpc.client.ServerProxy("https://` + auth + "@" + host + ":" + rf + `/").system.listMethods())'`
		}
		add("python", l.LinePython, python(hubHost))
		if h.c.PublicHost != hubHost {
			add("python-host", l.LinePythonNoDNS, python(h.c.PublicHost))
		}
		add("curl", l.LineCurl,
			`curl -u '`+auth+`' -H 'Content-Type: text/xml' --data '<?xml version="1.0"?><methodCall><methodName>system.listMethods</methodName><params/></methodCall>' https://`+hubHost+":"+rf+"/")
		add("homeassistant", l.LineHomeAssistant,
			"homematic:",
			"  interfaces:",
			"    rf:",
			"      host: "+hubHost,
			"      port: "+rf,
			"      ssl: true",
			"      username: "+tokenUser,
			"      password: "+secret,
			"    hmip:",
			"      host: "+hubHost,
			"      port: "+hmip,
			"      ssl: true",
			"      username: "+tokenUser,
			"      password: "+secret)
		add("iobroker", l.LineIoBroker,
			l.IOBAddress+": "+hubHost,
			l.IOBPort+": "+rf+"   (HmIP: "+hmip+")",
			l.IOBDaemon+": rfd   (HmIP: HMIP)",
			l.IOBProtocol+": XML-RPC",
			l.IOBHTTPS+": ✓",
			l.IOBUser+": "+tokenUser,
			l.IOBPass+": "+secret)
	}
	if t.Ports&store.PortWebUI != 0 {
		origin := "https://" + hubHost
		if p := port(portWebUITLS); p != "443" {
			origin += ":" + p
		}
		add("webui", l.LineWebUI, `curl -u '`+auth+`' `+origin+"/")
	}
	if t.Ports&store.PortScript != 0 {
		add("script", l.LineScript, `curl -u '`+auth+`' --data 'Write("hello");' https://`+hubHost+":"+port(portScriptTLS)+"/tclrega.exe")
	}
	return nt
}
