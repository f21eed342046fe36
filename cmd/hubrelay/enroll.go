package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// Enrollment codes from the operator's command line: hubrelay hub add
// without --key, hub codes, hub withdraw.

// The bounds of --ttl, as of the config's enroll_ttl.
const (
	minCodeTTL = time.Minute
	maxCodeTTL = 720 * time.Hour
)

// hubCode makes an enrollment code: hubrelay hub add NAME [--owner USER]
// [--ttl D]. The code is printed once and kept nowhere.
func (c cli) hubCode(ctx context.Context, cfg *relay.Config, db *store.Store, a args) error {
	name := a.rest[0]
	if a.opt["tunnel-ip"] != "" {
		return errors.New("--tunnel-ip goes with --key; a hub that enrolls with a code gets the next free tunnel address")
	}
	if err := relay.CheckHubName(name); err != nil {
		return err
	}
	if _, err := db.HubByName(ctx, name); err == nil {
		return fmt.Errorf("there is a hub %q already (hubrelay hub list)", name)
	}
	ttl := cfg.CodeTTL()
	if s := a.opt["ttl"]; s != "" {
		d, err := parseDuration(s)
		if err != nil || d < minCodeTTL || d > maxCodeTTL {
			return fmt.Errorf("--ttl %q: give a duration from 1m to 30d, like 24h, 90m or 7d", s)
		}
		ttl = d
	}
	var owner store.User
	if o := a.opt["owner"]; o != "" {
		var err error
		if owner, err = lookUser(ctx, db, o); err != nil {
			return err
		}
	}
	key, err := relayPrivateKey(cfg)
	if err != nil {
		return err
	}
	code, rec, err := relay.MakeEnrollCode(ctx, db, key, cfg.EnrollAddress, relay.CodeSpec{Hub: name, Owner: owner.Name, CreatedBy: "operator", TTL: ttl}, c.clock())
	if errors.Is(err, store.ErrExists) {
		return fmt.Errorf("%v (hubrelay hub codes lists the codes; hubrelay hub withdraw %s takes one back)", err, name)
	}
	if err != nil {
		return err
	}
	if err := c.record(ctx, db, store.KindEnroll, name, fmt.Sprintf("enrollment code made, owner %s, valid until %s", or(owner.Name, "nobody"), stamp(rec.Expires))); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Enrollment code for hub %s (owner %s), valid until %s, works once:\n\n    %s\n\n",
		name, or(owner.Name, "nobody"), c.showTime(rec.Expires), code)
	fmt.Fprintf(c.stdout, "On the hub, either\n  - run: hubtunnel enroll %s\n  - or paste the code into the hubtunnel addon's settings page (Settings > Control panel > hubtunnel).\n", code)
	host := name + "." + cfg.Domain
	if cfg.PortOffset != 0 {
		host += ":" + strconv.Itoa(443+cfg.PortOffset)
	}
	fmt.Fprintf(c.stdout, "The hub then connects to %s and is reached at https://%s/. This is the only time the code is shown.\n", cfg.EnrollAddress, host)
	return nil
}

// relayPrivateKey reads the relay's key, which enrollment codes are made
// with. It never makes one: a code made with a key the relay does not
// have enrolls nothing.
func relayPrivateKey(cfg *relay.Config) (vpn.PrivateKey, error) {
	k, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile)
	switch {
	case err == nil:
		return k, nil
	case errors.Is(err, os.ErrNotExist):
		return k, fmt.Errorf("the relay's key file %s does not exist yet: start the relay once (it makes its key), then make codes", cfg.PrivateKeyFile)
	case errors.Is(err, os.ErrPermission):
		return k, fmt.Errorf("cannot read the relay's key file %s, which codes are made with: run this as the relay's user (e.g. sudo -u hubrelay hubrelay hub add …)", cfg.PrivateKeyFile)
	}
	return k, fmt.Errorf("the relay's key file, which codes are made with: %v", err)
}

// hubCodes lists the enrollment codes, pending, used or expired (those
// used or expired more than a week ago are left out).
func (c cli) hubCodes(ctx context.Context, cfg *relay.Config, db *store.Store) error {
	cs, err := db.EnrollCodes(ctx, 0)
	if err != nil {
		return err
	}
	if len(cs) == 0 {
		fmt.Fprintln(c.stdout, "no enrollment codes (hubrelay hub add NAME makes one)")
		return nil
	}
	relayKey := ""
	if k, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile); err == nil {
		relayKey = k.Public().String()
	}
	now := c.clock()
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HUB\tOWNER\tSTATE\tVALID UNTIL\tUSED\tUSED FROM\tMADE BY")
	for _, e := range cs {
		state := "pending"
		switch {
		case !e.Used.IsZero():
			state = "used"
		case !now.Before(e.Expires):
			state = "expired"
		case relayKey != "" && e.RelayKey != relayKey:
			state = "void (made with another relay key)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Hub, or(e.Owner, "-"), state, c.showTime(e.Expires),
			or(c.showTime(e.Used), "-"), or(cell(e.UsedFrom), "-"), or(cell(e.CreatedBy), "-"))
	}
	return w.Flush()
}

// hubWithdraw deletes the code waiting for hub name.
func (c cli) hubWithdraw(ctx context.Context, db *store.Store, name string) error {
	cs, err := db.EnrollCodes(ctx, 0)
	if err != nil {
		return err
	}
	now := c.clock()
	for _, e := range cs {
		if e.Hub != name || !e.Pending(now) {
			continue
		}
		if err := db.WithdrawEnrollCode(ctx, e.ID); err != nil {
			return err
		}
		if err := c.record(ctx, db, store.KindEnroll, name, "enrollment code withdrawn"); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "withdrew the enrollment code for hub %s: it enrolls nothing now\n", name)
		return nil
	}
	return fmt.Errorf("no enrollment code is waiting for hub %q (hubrelay hub codes lists them)", name)
}
