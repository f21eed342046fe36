package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/vpn"
)

const keyUsage = `usage:
  hubrelay key show            the relay's key and its next one, if made
  hubrelay key rotate          make the next key, which the relay announces
                               to hubs from now on
  hubrelay key promote [--force]
                               make the next key the relay's key (the old one
                               is kept as private_key_file.old); then restart
                               the relay. Refused while a hub has not
                               connected since the rotate: it has not learned
                               the next key and would be stranded (--force
                               strands it)`

// key rotates the relay's own WireGuard key in two steps, so that no hub
// is stranded: rotate makes the next key, which the running relay
// announces to hubs inside the tunnel and they pin beside the current one;
// promote makes it the key once every hub has been told.
func (c cli) key(args []string) error {
	a, err := parseArgs(args, nil, []string{"force"})
	if err != nil {
		return err
	}
	if len(a.rest) != 1 {
		return errors.New(keyUsage)
	}
	cfg, err := relay.LoadConfig(a.config)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	cur, next := cfg.PrivateKeyFile, relay.NextKeyFile(cfg.PrivateKeyFile)
	switch a.rest[0] {
	case "show":
		k, err := vpn.LoadPrivateKey(cur)
		if err != nil {
			return fmt.Errorf("the relay's key: %w", err)
		}
		fmt.Fprintf(c.stdout, "key       %s (%s)\n", k.Public(), cur)
		if n, err := vpn.LoadPrivateKey(next); err == nil {
			fmt.Fprintf(c.stdout, "next key  %s (%s)\n", n.Public(), next)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the relay's next key: %w", err)
		}
		return nil
	case "rotate":
		if _, err := os.Stat(next); err == nil {
			return fmt.Errorf("there is a next key already (%s): promote it, or remove the file to make another", next)
		}
		k, err := vpn.GeneratePrivateKey()
		if err != nil {
			return err
		}
		if err := vpn.SavePrivateKey(next, k); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "made the next relay key %s (%s)\n", k.Public(), next)
		fmt.Fprintln(c.stdout, "The relay announces it to hubs from now on; each learns it at its next connection, or within a day.")
		fmt.Fprintln(c.stdout, "Once every hub has connected since (hubrelay hub list), run: hubrelay key promote")
		return nil
	case "promote":
		return c.promoteKey(cfg, cur, next, a.config, a.on["force"])
	}
	return errors.New(keyUsage)
}

func (c cli) promoteKey(cfg *relay.Config, cur, next, config string, force bool) error {
	fi, err := os.Stat(next)
	if err != nil {
		return fmt.Errorf("there is no next key (%s): run hubrelay key rotate first", next)
	}
	nk, err := vpn.LoadPrivateKey(next)
	if err != nil {
		return fmt.Errorf("the next key: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, db, err := c.open(ctx, config)
	if err != nil {
		return err
	}
	defer db.Close()
	hubs, err := db.Hubs(ctx)
	if err != nil {
		return err
	}
	// A hub learns the next key when it connects, and every day, by
	// fetching the relay's keys: the relay records when. One that has not
	// since the next key was made does not know it (being seen, connected
	// or gone, is not enough: it may not have asked).
	var behind []string
	for _, h := range hubs {
		if !h.Disabled && h.KeysLearned.Before(fi.ModTime()) {
			behind = append(behind, h.Name)
		}
	}
	if len(behind) > 0 && !force {
		return fmt.Errorf("%d hub(s) have not learned the next key yet and would be stranded: %s. Wait for them (each asks at its next connection and once a day; an idle UDP hub within minutes), or use --force",
			len(behind), strings.Join(behind, ", "))
	}
	if err := os.Rename(cur, cur+".old"); err != nil {
		return err
	}
	if err := os.Rename(next, cur); err != nil {
		os.Rename(cur+".old", cur)
		return err
	}
	fmt.Fprintf(c.stdout, "the relay's key is now %s; the old one is kept in %s\n", nk.Public(), cur+".old")
	fmt.Fprintln(c.stdout, "Restart the relay. Hubs switch to the new key at their next connection.")
	if len(behind) > 0 {
		fmt.Fprintf(c.stdout, "warning: these hubs need relay_public_key = %q in their config: %s\n", nk.Public().String(), strings.Join(behind, ", "))
	}
	return nil
}
