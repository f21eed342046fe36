package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
)

const tokenUsage = `usage:
  hubrelay token add HUB [--ports P] [--label TEXT] [--expires TIME] [--user USER] [--config FILE]
                       make an app token for HUB and print it, with lines to
                       paste into Python, curl, Home Assistant and ioBroker. It
                       is shown this once only. P as for grant (default xmlrpc);
                       TIME as for grant (default: until revoked); --user makes
                       it USER's: it never reaches more than USER may
  hubrelay token list [--hub HUB] [--config FILE]
                       list the tokens (their secrets are not kept)
  hubrelay token revoke ID [--config FILE]
                       revoke a token; it stops working at once`

// maxLabel bounds a token's label, in characters.
const maxLabel = 100

func (c cli) token(in []string) error {
	if len(in) == 0 {
		return errors.New(tokenUsage)
	}
	cmd := in[0]
	var a args
	var err error
	switch cmd {
	case "add":
		a, err = parseArgs(in[1:], []string{"ports", "label", "expires", "user"}, nil)
	case "list":
		a, err = parseArgs(in[1:], []string{"hub"}, nil)
	case "revoke":
		a, err = parseArgs(in[1:], nil, nil)
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, tokenUsage)
	}
	if err != nil {
		return fmt.Errorf("%v\n%s", err, tokenUsage)
	}
	want := map[string]int{"add": 1, "list": 0, "revoke": 1}[cmd]
	if len(a.rest) != want {
		return errors.New(tokenUsage)
	}
	switch cmd {
	case "add":
		return c.tokenAdd(a)
	case "list":
		return c.tokenList(a)
	}
	return c.tokenRevoke(a)
}

func (c cli) tokenAdd(a args) error {
	spec := store.TokenSpec{Hub: a.rest[0], Ports: store.PortXMLRPC, Label: a.opt["label"], User: a.opt["user"]}
	var err error
	if s, ok := a.opt["ports"]; ok {
		if spec.Ports, err = parsePorts(s); err != nil {
			return err
		}
	}
	if s, ok := a.opt["expires"]; ok {
		if spec.Expires, err = c.parseUntil("expires", s); err != nil {
			return err
		}
	}
	if n := len([]rune(spec.Label)); n > maxLabel {
		return fmt.Errorf("--label is %d characters long: use at most %d", n, maxLabel)
	}
	if strings.IndexFunc(spec.Label, unicode.IsControl) >= 0 {
		return errors.New("--label must not hold control characters (tabs, line breaks)")
	}
	ctx := context.Background()
	cfg, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	h, err := lookHub(ctx, db, spec.Hub)
	if err != nil {
		return err
	}
	var u store.User
	if spec.User != "" {
		if u, err = lookUser(ctx, db, spec.User); err != nil {
			return err
		}
	}
	secret, t, err := db.CreateToken(ctx, spec)
	if errors.Is(err, store.ErrNotAllowed) {
		reach, _ := db.Access(ctx, u.ID, spec.Hub)
		if reach == 0 {
			return fmt.Errorf("%s cannot reach hub %s, so cannot have a token for it: hubrelay grant %s %s --ports %s first", u.Name, h.Name, u.Name, h.Name, spec.Ports)
		}
		return fmt.Errorf("%s may reach only %s on hub %s, and a token of theirs no more: give --ports %s, or hubrelay grant %s %s --ports %s first",
			u.Name, reach, h.Name, reach&spec.Ports, u.Name, h.Name, reach|spec.Ports)
	}
	if err != nil {
		return err
	}
	what := fmt.Sprintf("app token #%d %q made for %s, expires %s", t.ID, t.Label, t.Ports, or(stamp0(t.Expires), "never"))
	if t.User != "" {
		what += fmt.Sprintf(", on behalf of %s (reaches no more than %s may)", t.User, t.User)
	}
	if err := c.record(ctx, db, store.KindToken, h.Name, what); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "made app token #%d for hub %s: %s, label %q, expires %s", t.ID, h.Name, t.Ports, t.Label, or(c.showTime(t.Expires), "never"))
	if t.User != "" {
		fmt.Fprintf(c.stdout, ", %s's (it never reaches more than %s may)", t.User, t.User)
	}
	fmt.Fprintf(c.stdout, ".\nThis is the only time it is shown; the relay keeps only a hash of it.\n\n")
	appLines(c.stdout, cfg, h.Name, secret, t.Ports)
	if h.Disabled {
		fmt.Fprintf(c.stdout, "\nnote: hub %s is disabled; the token works once hubrelay hub enable %s\n", h.Name, h.Name)
	}
	if t.UserID != 0 {
		_, until, err := db.Reach(ctx, t.UserID, h.Name)
		if err == nil && !until.IsZero() && (t.Expires.IsZero() || until.Before(t.Expires)) {
			fmt.Fprintf(c.stdout, "\nnote: it stops working when %s's grant ends, %s\n", t.User, c.showTime(until))
		}
	}
	return nil
}

// stamp0 is stamp, "" for the zero time.
func stamp0(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return stamp(t)
}

// The map's public ports an app token is printed for (before port_offset).
const (
	portWebUI  = 443   // the WebUI over TLS
	portWired  = 4430  // XML-RPC, wired devices (2000)
	portRF     = 4431  // XML-RPC, radio devices (2001): what apps use first
	portHmIP   = 4434  // XML-RPC, Homematic IP (2010)
	portScript = 44381 // the script engine over TLS (8181)
)

// appLines writes the lines an operator pastes into each kind of client, in
// the forms /work/design-auth.md ("App tokens") gives: HTTP Basic with the
// token as the password, on the relay's public host (the relay routes a
// token's requests to its hub on every port but the WebUI's, so apps need
// no wildcard DNS), and the hub's own host for the WebUI.
func appLines(w io.Writer, cfg *relay.Config, hub, secret string, ports store.Ports) {
	const user = "hubtunnel"
	host := cfg.PublicHost
	hubHost := hub + "." + cfg.Domain
	at := func(host string, port int) string {
		port += cfg.PortOffset
		if port == 443 {
			return host
		}
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	selfSigned := cfg.TLSCertFile == ""
	curl := "curl"
	if selfSigned {
		curl = "curl -k"
	}
	fmt.Fprintf(w, "  %s\n\n", secret)
	if ports.Has(store.PortXMLRPC) {
		rf := at(host, portRF)
		if selfSigned {
			fmt.Fprintf(w, "Python (xmlrpc.client):\n  python3 -c 'import ssl, xmlrpc.client; print(xmlrpc.client.ServerProxy(\"https://%s:%s@%s/\", context=ssl._create_unverified_context()).system.listMethods())'\n",
				user, secret, rf)
		} else {
			fmt.Fprintf(w, "Python (xmlrpc.client):\n  python3 -c 'import xmlrpc.client; print(xmlrpc.client.ServerProxy(\"https://%s:%s@%s/\").system.listMethods())'\n",
				user, secret, rf)
		}
		fmt.Fprintf(w, "curl:\n  %s -u %s:%s -H 'Content-Type: text/xml' --data '<?xml version=\"1.0\"?><methodCall><methodName>system.listMethods</methodName><params/></methodCall>' https://%s/\n",
			curl, user, secret, rf)
		fmt.Fprintf(w, "Home Assistant (configuration.yaml, the Homematic integration):\n")
		fmt.Fprintf(w, "  homematic:\n    interfaces:\n      rf:\n        host: %s\n        port: %d\n        path: /\n        username: %s\n        password: %s\n        ssl: true\n        verify_ssl: %t\n",
			host, portRF+cfg.PortOffset, user, secret, !selfSigned)
		fmt.Fprintf(w, "      # Homematic IP: a second interface like rf, with port: %d (wired devices: %d)\n", portHmIP+cfg.PortOffset, portWired+cfg.PortOffset)
		fmt.Fprintf(w, "ioBroker hm-rpc (instance settings; one instance per daemon):\n")
		fmt.Fprintf(w, "  HomeMatic address: %s\n  HomeMatic port: %d (daemon rfd; HMIP: %d, wired: %d)\n  Protocol: XML-RPC   Use https: on\n  Username: %s\n  Password: %s\n",
			host, portRF+cfg.PortOffset, portHmIP+cfg.PortOffset, portWired+cfg.PortOffset, user, secret)
	}
	if ports.Has(store.PortWebUI) {
		fmt.Fprintf(w, "curl, the WebUI (needs %s to lead to the relay):\n  %s -u %s:%s https://%s/\n", hubHost, curl, user, secret, at(hubHost, portWebUI))
	}
	if ports.Has(store.PortScript) {
		fmt.Fprintf(w, "curl, the script engine:\n  %s -u %s:%s --data 'Write(\"hello from the hub\");' https://%s/tclrega.exe\n", curl, user, secret, at(host, portScript))
	}
	fmt.Fprintf(w, "\nIf the hub's own authentication is on, use the hub's user name instead of %s, and htk_…:<the hub user's password> as the password.\n", user)
	if ports.Has(store.PortXMLRPC) || ports.Has(store.PortScript) {
		fmt.Fprintf(w, "Where *.%s leads to the relay, %s works as the host too.\n", cfg.Domain, hubHost)
	}
	if ports.Has(store.PortXMLRPC) {
		fmt.Fprintln(w, "The relay carries requests to the hub, not back: the hub's event callbacks reach Home Assistant or ioBroker only where the hub can connect to their callback address itself.")
	}
	if selfSigned {
		fmt.Fprintln(w, "The relay's certificate is self-signed (no tls_cert_file), so these lines skip the certificate check; give the relay a real certificate before handing them out.")
	}
}

func (c cli) tokenList(a args) error {
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	var ts []store.Token
	if hub := a.opt["hub"]; hub != "" {
		if _, err := lookHub(ctx, db, hub); err != nil {
			return err
		}
		ts, err = db.TokensOnHub(ctx, hub)
	} else {
		ts, err = db.AllTokens(ctx)
	}
	if err != nil {
		return err
	}
	if len(ts) == 0 {
		fmt.Fprintln(c.stdout, "no app tokens (hubrelay token add HUB makes one)")
		return nil
	}
	hubs, err := db.Hubs(ctx)
	if err != nil {
		return err
	}
	disabled := map[string]bool{}
	for _, h := range hubs {
		disabled[h.Name] = h.Disabled
	}
	now := c.clock()
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tHUB\tLABEL\tPORTS\tMADE BY\tCREATED\tLAST USED\tEXPIRES\tSTATE")
	for _, t := range ts {
		state := "active"
		switch {
		case !t.Expires.IsZero() && !now.Before(t.Expires):
			state = "expired"
		case disabled[t.Hub]:
			state = "hub disabled"
		case t.UserID != 0:
			reach, err := db.Access(ctx, t.UserID, t.Hub)
			if err != nil {
				return err
			}
			if r := reach & t.Ports; r == 0 {
				state = "no access: " + t.User + " lost the hub"
			} else if r != t.Ports {
				state = "reaches only " + r.String()
			}
		}
		fmt.Fprintf(w, "#%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Hub, or(t.Label, "-"), t.Ports, or(t.User, "operator"),
			c.showTime(t.Created), or(c.showTime(t.LastUsed), "never"), or(c.showTime(t.Expires), "never"), state)
	}
	return w.Flush()
}

// parseID reads a token's or session's id, as 7 or #7.
func parseID(what, s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a %s id: give the number the list shows, e.g. 7 or #7", s, what)
	}
	return id, nil
}

func (c cli) tokenRevoke(a args) error {
	id, err := parseID("token", a.rest[0])
	if err != nil {
		return err
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	t, err := db.TokenByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no app token #%d (hubrelay token list shows them)", id)
	} else if err != nil {
		return err
	}
	if err := db.RevokeToken(ctx, id); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("there is no app token #%d", id)
	} else if err != nil {
		return err
	}
	what := fmt.Sprintf("app token #%d %q (%s, made by %s) revoked", t.ID, t.Label, t.Ports, or(t.User, "the operator"))
	if err := c.record(ctx, db, store.KindRevoke, t.Hub, what); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "revoked app token #%d %q of hub %s; it stops working at once\n", t.ID, t.Label, t.Hub)
	return nil
}
