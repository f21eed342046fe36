package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/store"
	"github.com/hubtunnel/hubtunnel/vpn"
)

// CodeSpec is an enrollment code to make.
type CodeSpec struct {
	Hub       string        // the name the hub will have
	Owner     string        // the account that will own it; "" for none
	CreatedBy string        // "operator", or the user making it
	TTL       time.Duration // how long it is valid; default enroll_ttl's default, 24h
}

// MakeEnrollCode makes a one-time code with which a hub enrolls at the
// relay whose key is key and whose agents reach it at address (the
// config's EnrollAddress): a random seed is kept in db, and the code's
// secret is derived from it with key, so the store never holds a secret.
// The portal (through the running relay) and `hubrelay hub add` both make
// codes here.
func MakeEnrollCode(ctx context.Context, db *store.Store, key vpn.PrivateKey, address string, spec CodeSpec, now time.Time) (enroll.Code, store.EnrollCode, error) {
	if spec.TTL <= 0 {
		spec.TTL = defaultEnrollTTL
	}
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return enroll.Code{}, store.EnrollCode{}, fmt.Errorf("relay: enrollment code: %w", err)
	}
	code, err := enroll.New(address, enroll.DeriveSecret(key, seed))
	if err != nil {
		return enroll.Code{}, store.EnrollCode{}, fmt.Errorf("relay: enroll_address: %w", err)
	}
	id := code.ID()
	rec, err := db.CreateEnrollCode(ctx, store.EnrollSpec{
		ID:        hex.EncodeToString(id[:]),
		Seed:      hex.EncodeToString(seed[:]),
		RelayKey:  key.Public().String(),
		Hub:       spec.Hub,
		Owner:     spec.Owner,
		CreatedBy: spec.CreatedBy,
		Expires:   now.Add(spec.TTL),
	})
	if err != nil {
		return enroll.Code{}, store.EnrollCode{}, err
	}
	return code, rec, nil
}

// NewEnrollCode makes a code at this running relay (see MakeEnrollCode).
func (s *Server) NewEnrollCode(ctx context.Context, spec CodeSpec) (enroll.Code, store.EnrollCode, error) {
	if spec.TTL <= 0 {
		spec.TTL = s.cfg.enrollTTL
	}
	return MakeEnrollCode(ctx, s.db, s.key, s.cfg.EnrollAddress, spec, s.now())
}
