package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"text/tabwriter"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const hubUsage = `usage:
  hubrelay hub list [--config FILE]
                       list the hubs: owner, online (since when) or offline or
                       disabled, when their agent was last seen, what it said
                       of itself, and how it is connected (tcp, tls, udp)
  hubrelay hub owner HUB USER [--config FILE]
  hubrelay hub owner HUB --none [--config FILE]
                       give HUB to USER (the owner reaches all of it and grants
                       access), or leave it without an owner
  hubrelay hub add HUB [--owner USER] [--ttl 24h] [--config FILE]
                       make a one-time enrollment code for a new hub HUB: on the
                       hub, hubtunnel enroll CODE (or the code pasted into the
                       addon's settings page) registers it, and a running relay
                       serves it at once. Valid for enroll_ttl (default 24h) or
                       --ttl (1m to 30d). Run as the relay's user: it reads the
                       relay's key file
  hubrelay hub add HUB --key PUBLIC_KEY [--tunnel-ip IP] [--owner USER] [--config FILE]
                       serve a new hub without a code: its agent's public key
                       (hubtunnel pubkey), the next free tunnel address unless
                       given; a running relay serves it at once. Print the agent's
                       tunnel_ip to put in its config
  hubrelay hub codes [--config FILE]
                       list the enrollment codes: hub, owner, pending, used or
                       expired, valid until, used from where
  hubrelay hub withdraw HUB [--config FILE]
                       take back the code waiting for HUB: it enrolls nothing
  hubrelay hub rename HUB NEW [--config FILE]
                       call HUB NEW from now on (NEW.<domain>); its key, owner,
                       grants and tokens stay. A running relay serves it under
                       the new name at once; the old name reaches nothing
  hubrelay hub remove HUB [--config FILE]
                       stop serving HUB and forget it with its grants and tokens;
                       a running relay cuts it off at once
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
	case "list", "disable", "enable", "remove", "codes", "withdraw", "rename":
		a, err = parseArgs(in[1:], nil, nil)
	case "add":
		a, err = parseArgs(in[1:], []string{"key", "tunnel-ip", "owner", "ttl"}, nil)
	case "owner":
		a, err = parseArgs(in[1:], nil, []string{"none"})
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, hubUsage)
	}
	if err != nil {
		return fmt.Errorf("%v\n%s", err, hubUsage)
	}
	want := map[string]int{"list": 0, "disable": 1, "enable": 1, "owner": 2, "add": 1, "remove": 1, "codes": 0, "withdraw": 1, "rename": 2}[cmd]
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
	cfg, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	switch cmd {
	case "list":
		return c.hubList(ctx, db)
	case "add":
		if a.opt["key"] == "" {
			return c.hubCode(ctx, cfg, db, a)
		}
		return c.hubAdd(ctx, cfg, db, a)
	case "codes":
		return c.hubCodes(ctx, cfg, db)
	case "withdraw":
		return c.hubWithdraw(ctx, db, a.rest[0])
	}
	h, err := lookHub(ctx, db, a.rest[0])
	if err != nil {
		return err
	}
	switch cmd {
	case "owner":
		return c.hubOwner(ctx, db, h, a)
	case "remove":
		return c.hubRemove(ctx, cfg, db, h)
	case "rename":
		return c.hubRename(ctx, cfg, db, h, a.rest[1])
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
	fmt.Fprintln(w, "NAME\tOWNER\tSTATE\tLAST SEEN\tAGENT\tMODEL\tFIRMWARE\tTRANSPORT")
	for _, h := range hs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, or(h.Owner, "-"), c.hubState(h), or(c.showTime(h.LastSeen), "never"),
			or(cell(h.AgentVersion), "-"), or(cell(h.Model), "-"), or(cell(h.Firmware), "-"), or(cell(h.Transport), "-"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "(STATE and TRANSPORT as the relay recorded them; a relay that crashed left them as they were until it starts again)")
	return nil
}

// hubState is a hub's STATE in hub list: disabled, online since when (as
// the relay serving it recorded), or offline.
func (c cli) hubState(h store.Hub) string {
	switch {
	case h.Disabled:
		return "disabled"
	case !h.OnlineSince.IsZero():
		return "online since " + c.showTime(h.OnlineSince)
	}
	return "offline"
}

// hubAdd serves a new hub: hubrelay hub add NAME --key KEY [--tunnel-ip IP]
// [--owner USER].
func (c cli) hubAdd(ctx context.Context, cfg *relay.Config, db *store.Store, a args) error {
	name := a.rest[0]
	if err := relay.CheckHubName(name); err != nil {
		return err
	}
	if _, err := db.HubByName(ctx, name); err == nil {
		return fmt.Errorf("there is a hub %q already (hubrelay hub list)", name)
	}
	if a.opt["ttl"] != "" {
		return errors.New("--ttl is for enrollment codes (hub add without --key); a hub added with --key is served until it is removed")
	}
	key, err := vpn.ParsePublicKey(a.opt["key"])
	if err != nil {
		return fmt.Errorf("--key: %v", err)
	}
	relayIP, err := netip.ParseAddr(cfg.TunnelIP)
	if err != nil {
		return fmt.Errorf("the config's tunnel_ip: %v", err)
	}
	var ip netip.Addr
	if s := a.opt["tunnel-ip"]; s != "" {
		if ip, err = netip.ParseAddr(s); err != nil || !ip.Is4() || ip == relayIP {
			return fmt.Errorf("--tunnel-ip %q: want an IPv4 address other than the relay's own (%s)", s, relayIP)
		}
	} else if ip, err = db.NextTunnelIP(ctx, relayIP); err != nil {
		return err
	}
	var owner store.User
	if name := a.opt["owner"]; name != "" {
		if owner, err = lookUser(ctx, db, name); err != nil {
			return err
		}
	}
	if _, err := db.UpsertHub(ctx, store.HubSpec{Name: name, PublicKey: key.String(), TunnelIP: ip.String()}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("that key or tunnel address belongs to another hub: %v", err)
		}
		return err
	}
	if owner.Name != "" {
		if err := db.SetHubOwner(ctx, name, owner.Name); err != nil {
			return err
		}
	}
	if err := c.record(ctx, db, store.KindGrant, name, fmt.Sprintf("hub added, tunnel address %s, owner %s", ip, or(owner.Name, "nobody"))); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added hub %s (tunnel address %s, owner %s); a running relay serves it at once.\n", name, ip, or(owner.Name, "nobody"))
	fmt.Fprintf(c.stdout, "In the hub's config: tunnel_ip = %q, relay_public_key = %q\n", ip.String(), relayKey(cfg))
	return nil
}

// relayKey is the relay's public key from its key file, or a hint where
// to find it.
func relayKey(cfg *relay.Config) string {
	k, err := vpn.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return "(hubtunnel pubkey < " + cfg.PrivateKeyFile + ")"
	}
	return k.Public().String()
}

// hubRename gives a hub another name. A hub the config's [[hub]] list
// names is renamed there: the next start would bring the old name back
// with the hub's key, and the key cannot be two hubs'.
func (c cli) hubRename(ctx context.Context, cfg *relay.Config, db *store.Store, h store.Hub, name string) error {
	for _, hc := range cfg.Hubs {
		if hc.Name == h.Name {
			return fmt.Errorf("hub %s is in the config's [[hub]] list: rename it there and restart the relay", h.Name)
		}
	}
	switch err := db.RenameHub(ctx, h.Name, name); {
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("the name %s is taken: %v", name, err)
	case err != nil:
		return err
	}
	if err := c.record(ctx, db, store.KindGrant, name, "hub renamed from "+h.Name); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "hub %s is called %s now (https://%s.%s/); a running relay serves it under the new name at once\n", h.Name, name, name, cfg.Domain)
	return nil
}

// hubRemove forgets a hub; a running relay cuts it off at once.
func (c cli) hubRemove(ctx context.Context, cfg *relay.Config, db *store.Store, h store.Hub) error {
	if err := db.RemoveHub(ctx, h.Name); err != nil {
		return err
	}
	if err := c.record(ctx, db, store.KindRevoke, h.Name, "hub removed with its grants and tokens"); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "removed hub %s with its grants and tokens; a running relay cuts it off at once\n", h.Name)
	for _, hc := range cfg.Hubs {
		if hc.Name == h.Name {
			fmt.Fprintf(c.stdout, "warning: the config's [[hub]] list still names %s: take it out, or the next start brings it back\n", h.Name)
		}
	}
	return nil
}
