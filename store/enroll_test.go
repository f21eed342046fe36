package store

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestEnrollCodes(t *testing.T) {
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		relayIP := netip.MustParseAddr("100.96.0.1")
		must[User](t)(s.AddUser(ctx, "alice", "correct horse battery"))
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"taken", testKey(1), "100.96.0.2"}))
		spec := func(id, hub string) EnrollSpec {
			return EnrollSpec{ID: id, Seed: "seed-" + id, RelayKey: testKey(100), Hub: hub, Owner: "alice", CreatedBy: "alice", Expires: c.Now().Add(24 * time.Hour)}
		}
		code := must[EnrollCode](t)(s.CreateEnrollCode(ctx, spec("c1", "home")))
		if code.Owner != "alice" || !code.Pending(c.Now()) || code.Seed != "seed-c1" {
			t.Fatalf("new code: %+v", code)
		}
		// A name a hub has, or another pending code waits for, is not free.
		for _, sp := range []EnrollSpec{spec("c2", "taken"), spec("c3", "home")} {
			if _, err := s.CreateEnrollCode(ctx, sp); !errors.Is(err, ErrExists) {
				t.Fatalf("code for %q: %v; want ErrExists", sp.Hub, err)
			}
		}
		if _, err := s.CreateEnrollCode(ctx, spec("c4", "Not A Name")); err == nil {
			t.Fatal("a code for a name that is no DNS label")
		}
		rev := must[int64](t)(s.Revision(ctx))

		// The key of another hub cannot enroll.
		if _, err := s.UseEnrollCode(ctx, "c1", testKey(1), "192.0.2.1:5000", relayIP); !errors.Is(err, ErrKeyTaken) {
			t.Fatalf("enroll with hub taken's key: %v", err)
		}
		h := must[Hub](t)(s.UseEnrollCode(ctx, "c1", testKey(2), "192.0.2.1:5000", relayIP))
		alice := must[User](t)(s.UserByName(ctx, "alice"))
		if h.Name != "home" || h.OwnerID != alice.ID || h.TunnelIP != "100.96.0.3" || h.PublicKey != testKey(2) {
			t.Fatalf("enrolled hub: %+v", h)
		}
		if r := must[int64](t)(s.Revision(ctx)); r <= rev {
			t.Fatal("an enrollment must count as a change: a running relay serves the hub at once")
		}
		if _, err := s.UseEnrollCode(ctx, "c1", testKey(3), "192.0.2.1:5000", relayIP); !errors.Is(err, ErrCodeUsed) {
			t.Fatalf("second use: %v; want ErrCodeUsed", err)
		}
		used := must[EnrollCode](t)(s.EnrollCodeByID(ctx, "c1"))
		if used.UsedKey != testKey(2) || used.UsedFrom != "192.0.2.1:5000" || used.Pending(c.Now()) {
			t.Fatalf("used code: %+v", used)
		}
		if _, err := s.UseEnrollCode(ctx, "nope", testKey(3), "", relayIP); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown code: %v", err)
		}

		// Expired codes fail, and free their name.
		must[EnrollCode](t)(s.CreateEnrollCode(ctx, spec("c5", "cellar")))
		c.Add(24 * time.Hour)
		if _, err := s.UseEnrollCode(ctx, "c5", testKey(4), "", relayIP); !errors.Is(err, ErrCodeExpired) {
			t.Fatalf("expired: %v", err)
		}
		must[EnrollCode](t)(s.CreateEnrollCode(ctx, spec("c6", "cellar")))
		// A name taken after the code was made.
		must[Hub](t)(s.UpsertHub(ctx, HubSpec{"cellar", testKey(5), "100.96.0.9"}))
		if _, err := s.UseEnrollCode(ctx, "c6", testKey(6), "", relayIP); !errors.Is(err, ErrNameTaken) {
			t.Fatalf("name taken meanwhile: %v", err)
		}
		// Withdrawn codes are gone; used ones stay on record.
		check(t, s.WithdrawEnrollCode(ctx, "c6"))
		if err := s.WithdrawEnrollCode(ctx, "c1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("withdrawing a used code: %v", err)
		}
		list := must[[]EnrollCode](t)(s.EnrollCodes(ctx, alice.ID))
		if len(list) != 2 || list[0].ID != "c5" && list[1].ID != "c5" {
			t.Fatalf("alice's codes: %+v", list)
		}
	})
}
