package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

const grantUsage = `usage:
  hubrelay grant USER HUB [--ports P] [--until TIME] [--config FILE]
                       let USER reach HUB: P is webui, xmlrpc, script or all,
                       or several comma-separated (default webui); TIME is
                       "2026-12-01 18:00" (local time), RFC 3339, or a
                       duration from now (4h, 2d); without it, for good.
                       A second grant replaces the first
  hubrelay revoke USER HUB [--config FILE]
                       take USER's grant on HUB away; their open connections
                       to it end at once
  hubrelay grants [--hub HUB] [--user USER] [--config FILE]
                       list the grants, expired ones too`

func (c cli) grant(in []string) error {
	a, err := parseArgs(in, []string{"ports", "until"}, nil)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, grantUsage)
	}
	if len(a.rest) != 2 {
		return errors.New(grantUsage)
	}
	user, hub := a.rest[0], a.rest[1]
	ports := store.PortWebUI
	if s, ok := a.opt["ports"]; ok {
		if ports, err = parsePorts(s); err != nil {
			return err
		}
	}
	var until time.Time
	if s, ok := a.opt["until"]; ok {
		if until, err = c.parseUntil("until", s); err != nil {
			return err
		}
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	u, err := lookUser(ctx, db, user)
	if err != nil {
		return err
	}
	h, err := lookHub(ctx, db, hub)
	if err != nil {
		return err
	}
	if h.OwnerID == u.ID {
		return fmt.Errorf("%s owns hub %s and reaches all of it already", user, hub)
	}
	old, had, err := grantOf(ctx, db, user, hub)
	if err != nil {
		return err
	}
	if err := db.Grant(ctx, user, hub, ports, until); err != nil {
		return err
	}
	what := fmt.Sprintf("%s may reach %s %s", user, ports, auditUntil(until))
	if had {
		what += fmt.Sprintf(" (was %s %s)", old.Ports, auditUntil(old.Until))
	}
	if err := c.record(ctx, db, store.KindGrant, hub, what); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s may reach %s on hub %s %s", user, ports, hub, c.until(until))
	if had {
		fmt.Fprintf(c.stdout, " (before: %s %s)", old.Ports, c.until(old.Until))
	}
	fmt.Fprintln(c.stdout)
	if h.Disabled {
		fmt.Fprintf(c.stdout, "note: hub %s is disabled; nobody reaches it until hubrelay hub enable %s\n", hub, hub)
	}
	if u.Disabled {
		fmt.Fprintf(c.stdout, "note: the account %s is disabled\n", user)
	}
	return nil
}

// auditUntil is an end time for an audit record.
func auditUntil(t time.Time) string {
	if t.IsZero() {
		return "for good"
	}
	return "until " + stamp(t)
}

// grantOf is user's grant on hub, and whether there is one.
func grantOf(ctx context.Context, db *store.Store, user, hub string) (store.Grant, bool, error) {
	gs, err := db.GrantsOfUser(ctx, user)
	if err != nil {
		return store.Grant{}, false, err
	}
	for _, g := range gs {
		if g.Hub == hub {
			return g, true, nil
		}
	}
	return store.Grant{}, false, nil
}

func (c cli) revoke(in []string) error {
	a, err := parseArgs(in, nil, nil)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, grantUsage)
	}
	if len(a.rest) != 2 {
		return errors.New(grantUsage)
	}
	user, hub := a.rest[0], a.rest[1]
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := lookUser(ctx, db, user); err != nil {
		return err
	}
	if _, err := lookHub(ctx, db, hub); err != nil {
		return err
	}
	g, had, err := grantOf(ctx, db, user, hub)
	if err != nil {
		return err
	}
	if !had {
		return fmt.Errorf("%s has no grant on hub %s (hubrelay grants --hub %s lists its grants)", user, hub, hub)
	}
	if err := db.Revoke(ctx, user, hub); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s has no grant on hub %s", user, hub)
	} else if err != nil {
		return err
	}
	if err := c.record(ctx, db, store.KindRevoke, hub, fmt.Sprintf("%s's grant (%s %s) revoked", user, g.Ports, auditUntil(g.Until))); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s no longer reaches hub %s; a running relay ends their open connections to it at once\n", user, hub)
	if ts, err := db.TokensOfUser(ctx, user); err == nil {
		n := 0
		for _, t := range ts {
			if t.Hub == hub {
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(c.stdout, "the %d app token(s) %s made for it stop working with the grant (hubrelay token list --hub %s)\n", n, user, hub)
		}
	}
	return nil
}

func (c cli) grants(in []string) error {
	a, err := parseArgs(in, []string{"hub", "user"}, nil)
	if err != nil {
		return fmt.Errorf("%v\n%s", err, grantUsage)
	}
	if len(a.rest) != 0 {
		return errors.New(grantUsage)
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	hub, user := a.opt["hub"], a.opt["user"]
	var gs []store.Grant
	switch {
	case hub != "":
		if _, err := lookHub(ctx, db, hub); err != nil {
			return err
		}
		gs, err = db.GrantsOnHub(ctx, hub)
	case user != "":
		gs, err = db.GrantsOfUser(ctx, user)
	default:
		gs, err = db.AllGrants(ctx)
	}
	if err != nil {
		return err
	}
	if user != "" {
		if _, err := lookUser(ctx, db, user); err != nil {
			return err
		}
		gs = slices.DeleteFunc(gs, func(g store.Grant) bool { return g.User != user })
	}
	if len(gs) == 0 {
		fmt.Fprintln(c.stdout, "no grants (hubrelay grant USER HUB makes one)")
		return nil
	}
	now := c.clock()
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "USER\tHUB\tPORTS\tUNTIL\tSTATE")
	for _, g := range gs {
		state := "active"
		if !g.Active(now) {
			state = "expired"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", g.User, g.Hub, g.Ports, or(c.showTime(g.Until), "no end"), state)
	}
	return w.Flush()
}
