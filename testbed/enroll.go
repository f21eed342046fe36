package testbed

import (
	"context"
	"fmt"
	"time"

	"github.com/hubtunnel/hubtunnel/relay"
	"github.com/hubtunnel/hubtunnel/store"
)

// MakeCode makes an enrollment code for a hub named hub, owned by the
// bed's owner, in the relay's store and under its key, as `hubrelay hub
// add` does (a running relay serves it: the store is shared). ttl is how
// long it is valid from now; a code made with a now in the past has
// expired.
func (r *Relay) MakeCode(hub string, now time.Time, ttl time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, r.Store, store.Options{})
	if err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	defer db.Close()
	code, _, err := relay.MakeEnrollCode(ctx, db, r.Key, r.AgentAddr(), relay.CodeSpec{Hub: hub, Owner: r.Owner, CreatedBy: "operator", TTL: ttl}, now)
	if err != nil {
		return "", fmt.Errorf("testbed: %w", err)
	}
	return code.String(), nil
}

// AddToken makes an app token for hub (one that enrolled, say), opening
// all its ports; Token and TokenURL use it from then on.
func (r *Relay) AddToken(hub string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, r.Store, store.Options{})
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer db.Close()
	secret, _, err := db.CreateToken(ctx, store.TokenSpec{Hub: hub, Ports: store.PortsAll, Label: "testbed"})
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	r.tokens[hub] = secret
	return nil
}
