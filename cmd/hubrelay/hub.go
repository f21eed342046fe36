package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/hubtunnel/hubtunnel/store"
)

const hubUsage = `usage:
  hubrelay hub list [--config FILE]
                       list the hubs: owner, when their agent was last seen,
                       what it said of itself, disabled or not
  hubrelay hub owner HUB USER [--config FILE]
  hubrelay hub owner HUB --none [--config FILE]
                       give HUB to USER (the owner reaches all of it and grants
                       access), or leave it without an owner
  hubrelay hub disable HUB [--config FILE]
  hubrelay hub enable HUB [--config FILE]
                       nobody reaches a disabled hub, its owner neither`

func (c cli) hub(in []string) error {
	if len(in) == 0 {
		return errors.New(hubUsage)
	}
	cmd := in[0]
	var a args
	var err error
	switch cmd {
	case "list", "disable", "enable":
		a, err = parseArgs(in[1:], nil, nil)
	case "owner":
		a, err = parseArgs(in[1:], nil, []string{"none"})
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, hubUsage)
	}
	if err != nil {
		return fmt.Errorf("%v\n%s", err, hubUsage)
	}
	want := map[string]int{"list": 0, "disable": 1, "enable": 1, "owner": 2}[cmd]
	if cmd == "owner" && a.on["none"] {
		want = 1
	}
	if len(a.rest) != want {
		if cmd == "owner" && len(a.rest) == 2 {
			return fmt.Errorf("give a new owner or --none, not both\n%s", hubUsage)
		}
		return errors.New(hubUsage)
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	if cmd == "list" {
		return c.hubList(ctx, db)
	}
	h, err := lookHub(ctx, db, a.rest[0])
	if err != nil {
		return err
	}
	if cmd == "owner" {
		return c.hubOwner(ctx, db, h, a)
	}
	disable := cmd == "disable"
	if h.Disabled == disable {
		fmt.Fprintf(c.stdout, "hub %s is %sd already\n", h.Name, cmd)
		return nil
	}
	if err := db.SetHubDisabled(ctx, h.Name, disable); err != nil {
		return err
	}
	if disable {
		if err := c.record(ctx, db, store.KindRevoke, h.Name, "hub disabled: nobody reaches it"); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "disabled hub %s: nobody reaches it, its owner neither, until hubrelay hub enable %s; a running relay cuts its open connections at once\n", h.Name, h.Name)
		return nil
	}
	if err := c.record(ctx, db, store.KindGrant, h.Name, "hub enabled"); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "enabled hub %s: its owner and grants reach it again\n", h.Name)
	return nil
}

func (c cli) hubOwner(ctx context.Context, db *store.Store, h store.Hub, a args) error {
	var owner string
	if !a.on["none"] {
		u, err := lookUser(ctx, db, a.rest[1])
		if err != nil {
			return err
		}
		owner = u.Name
	}
	if owner == h.Owner {
		fmt.Fprintf(c.stdout, "hub %s's owner is %s already\n", h.Name, or(owner, "nobody"))
		return nil
	}
	if err := db.SetHubOwner(ctx, h.Name, owner); err != nil {
		return err
	}
	kind, what := store.KindGrant, fmt.Sprintf("owner is now %s (was %s)", or(owner, "nobody"), or(h.Owner, "nobody"))
	if owner == "" {
		kind = store.KindRevoke
	}
	if err := c.record(ctx, db, kind, h.Name, what); err != nil {
		return err
	}
	if owner == "" {
		fmt.Fprintf(c.stdout, "hub %s has no owner now (it was %s's)", h.Name, h.Owner)
	} else {
		fmt.Fprintf(c.stdout, "%s owns hub %s now (before: %s)", owner, h.Name, or(h.Owner, "nobody"))
	}
	if h.Owner != "" {
		fmt.Fprintf(c.stdout, "; %s no longer reaches it unless granted, and a running relay cuts their open connections at once", h.Owner)
	}
	fmt.Fprintln(c.stdout)
	return nil
}

func (c cli) hubList(ctx context.Context, db *store.Store) error {
	hs, err := db.Hubs(ctx)
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		fmt.Fprintln(c.stdout, "no hubs yet: add them to the config's [[hub]] list")
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tOWNER\tLAST SEEN\tAGENT\tMODEL\tFIRMWARE\tSTATE")
	for _, h := range hs {
		state := "enabled"
		if h.Disabled {
			state = "disabled"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, or(h.Owner, "-"), or(c.showTime(h.LastSeen), "never"),
			or(cell(h.AgentVersion), "-"), or(cell(h.Model), "-"), or(cell(h.Firmware), "-"), state)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "(whether a hub is online now only the running relay knows: see the portal, or hubrelay audit --kind hub-gone)")
	return nil
}
