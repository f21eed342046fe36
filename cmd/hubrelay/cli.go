package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// cli is what the subcommands read and write; tests give their own.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// terminal, if set, reads a password without echo (stdin is a terminal).
	terminal func(prompt string) (string, error)
	// now is the clock for "4h from now", expiry and the store. Default
	// time.Now.
	now func() time.Time
	// loc is the time zone times are read in ("2026-12-01 18:00") and
	// shown in. Default time.Local.
	loc *time.Location
}

func osCLI() cli {
	c := cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		c.terminal = func(prompt string) (string, error) {
			fmt.Fprint(os.Stderr, prompt)
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(os.Stderr)
			return string(b), err
		}
	}
	return c
}

func (c cli) clock() time.Time {
	if c.now == nil {
		return time.Now()
	}
	return c.now()
}

func (c cli) zone() *time.Location {
	if c.loc == nil {
		return time.Local
	}
	return c.loc
}

// args is a command line taken apart by parseArgs.
type args struct {
	config string            // --config, default relay.toml
	opt    map[string]string // options with a value: --until 4h
	on     map[string]bool   // switches: --json
	rest   []string          // the words that are no option
}

// parseArgs takes a subcommand's options out of its arguments, wherever they
// stand: --config FILE, the options in withValue (--NAME VALUE or
// --NAME=VALUE) and the switches (--NAME). A single dash works too.
func parseArgs(in []string, withValue, switches []string) (args, error) {
	a := args{config: "relay.toml", opt: map[string]string{}, on: map[string]bool{}}
	seen := map[string]bool{}
	for i := 0; i < len(in); i++ {
		w := in[i]
		if !strings.HasPrefix(w, "-") || w == "-" {
			a.rest = append(a.rest, w)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
		takesVal := name == "config" || slices.Contains(withValue, name)
		switch {
		case takesVal && !hasVal:
			if i+1 == len(in) {
				return args{}, fmt.Errorf("--%s needs a value", name)
			}
			val = in[i+1]
			i++
		case takesVal:
		case slices.Contains(switches, name) && !hasVal:
		case slices.Contains(switches, name):
			return args{}, fmt.Errorf("--%s takes no value", name)
		default:
			return args{}, fmt.Errorf("unknown option %s", w)
		}
		if seen[name] {
			return args{}, fmt.Errorf("--%s is given twice", name)
		}
		seen[name] = true
		switch {
		case name == "config":
			a.config = val
		case takesVal:
			a.opt[name] = val
		default:
			a.on[name] = true
		}
	}
	return a, nil
}

// splitArgs takes --config FILE (or -config, --config=FILE) out of args.
func splitArgs(in []string) (config string, rest []string, err error) {
	a, err := parseArgs(in, nil, nil)
	return a.config, a.rest, err
}

// open reads the relay's config and opens its store, with the config's
// [[hub]] list imported as the relay imports it at start: a hub added to
// the config can be given an owner or granted before the relay restarts.
func (c cli) open(ctx context.Context, config string) (*relay.Config, *store.Store, error) {
	cfg, err := relay.LoadConfig(config)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(ctx, cfg.Store, store.Options{
		Now:  c.now,
		Logf: func(f string, a ...any) { fmt.Fprintf(c.stderr, f+"\n", a...) },
	})
	if err != nil {
		return nil, nil, err
	}
	specs := make([]store.HubSpec, 0, len(cfg.Hubs))
	for _, h := range cfg.Hubs {
		// The config is validated: both parse. The store keeps them in
		// the relay's own spelling.
		key, _ := vpn.ParsePublicKey(h.PublicKey)
		ip, _ := netip.ParseAddr(h.TunnelIP)
		specs = append(specs, store.HubSpec{Name: h.Name, PublicKey: key.String(), TunnelIP: ip.String()})
	}
	if _, err := db.ImportHubs(ctx, specs); err != nil {
		// The relay refuses to start with this config; say so, but let
		// the operator look around the store meanwhile.
		fmt.Fprintf(c.stderr, "warning: the config's [[hub]] list does not agree with the store, and the relay will not start with it: %v\n", err)
	}
	return cfg, db, nil
}

// byOperator starts the Detail of every audit record the CLI writes.
const byOperator = "by operator (hubrelay CLI): "

// record writes the audit record of a change the operator made. what says
// what changed, and never holds a secret.
func (c cli) record(ctx context.Context, db *store.Store, kind, hub, what string) error {
	err := db.Append(ctx, store.Event{Kind: kind, Hub: hub, Outcome: "ok", Detail: byOperator + what})
	if err != nil {
		return fmt.Errorf("the change is made, but its audit record could not be written: %w", err)
	}
	return nil
}

// lookUser is the user of that name, or an error that says there is none.
func lookUser(ctx context.Context, db *store.Store, name string) (store.User, error) {
	u, err := db.UserByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return u, fmt.Errorf("there is no user %q (hubrelay user list shows them)", name)
	}
	return u, err
}

// lookHub is the hub of that name, or an error that says there is none.
func lookHub(ctx context.Context, db *store.Store, name string) (store.Hub, error) {
	h, err := db.HubByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return h, fmt.Errorf("there is no hub %q (hubrelay hub list shows them)", name)
	}
	return h, err
}

// parsePorts reads --ports, naming the option in its error.
func parsePorts(s string) (store.Ports, error) {
	p, err := store.ParsePorts(s)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("--ports %q: give webui, xmlrpc, script or all, or several comma-separated (webui,xmlrpc)", s)
	}
	return p, nil
}

// timeForms are the ways to write a time in local time, besides RFC 3339.
var timeForms = []string{"2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"}

// daysRE is a duration with days in front: 2d, 1d12h.
var daysRE = regexp.MustCompile(`^(\d{1,4})d(.*)$`)

// parseDuration is time.ParseDuration that also takes days (2d, 1d12h).
func parseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		days = time.Duration(n) * 24 * time.Hour
		if s = m[2]; s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	return days + d, err
}

// parseTime reads the value of a time option: RFC 3339, a local date and
// time (2026-12-01 18:00), or a duration (4h, 2d), which is from now for
// a time ahead (ago false) or before now (ago true).
func (c cli) parseTime(option, s string, ago bool) (time.Time, error) {
	s = strings.TrimSpace(s)
	now := c.clock()
	if d, err := parseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--%s %s: give a duration greater than zero", option, s)
		}
		if ago {
			return now.Add(-d), nil
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, f := range timeForms {
		if t, err := time.ParseInLocation(f, s, c.zone()); err == nil {
			return t, nil
		}
	}
	rel := "from now"
	if ago {
		rel = "ago"
	}
	return time.Time{}, fmt.Errorf("--%s %q: give a time like \"2026-12-01 18:00\" (local time), 2026-12-01T18:00:00+01:00, or a duration like 4h, 90m or 2d (%s)", option, s, rel)
}

// parseUntil reads an end time, which must lie ahead.
func (c cli) parseUntil(option, s string) (time.Time, error) {
	t, err := c.parseTime(option, s, false)
	if err != nil {
		return t, err
	}
	if now := c.clock(); !t.After(now) {
		return time.Time{}, fmt.Errorf("--%s %s is in the past (it is %s now): give a time ahead", option, c.showTime(t), c.showTime(now))
	}
	return t, nil
}

// showTime is t in local time for a table, "" for the zero time.
func (c cli) showTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(c.zone()).Format("2006-01-02 15:04")
}

// stamp is t for an audit record: RFC 3339 in UTC, unambiguous to whoever
// reads it in whatever zone.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// until says when an end time is, for messages: "until 2026-12-01 18:00" or
// "for good".
func (c cli) until(t time.Time) string {
	if t.IsZero() {
		return "for good"
	}
	return "until " + c.showTime(t)
}

// or is s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// commands are the subcommands that work on the relay's store.
var commands = map[string]func(cli, []string) error{
	"user": cli.user, "grant": cli.grant, "revoke": cli.revoke, "grants": cli.grants,
	"token": cli.token, "session": cli.session, "audit": cli.audit, "hub": cli.hub,
	"key": cli.key, "backup": cli.backup, "restore": cli.restore,
}

// usages are the subcommands' own usage texts, for hubrelay CMD --help.
var usages = map[string]string{
	"user": userUsage, "grant": grantUsage, "revoke": grantUsage, "grants": grantUsage,
	"token": tokenUsage, "session": sessionUsage, "audit": auditUsage, "hub": hubUsage,
	"key": keyUsage, "backup": backupUsage, "restore": backupUsage,
}

// wantsHelp reports whether args ask for a command's usage.
func wantsHelp(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" })
}
