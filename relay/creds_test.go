package relay

import (
	"context"
	"encoding/base64"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// credentials gives a test relay's clients their credentials: user
// "owner" owns every hub and is logged in (tr.session), and each hub has
// an operator's token for all its ports (tr.tokens).
func (tr *testRelay) credentials(t testing.TB, hubs []string) {
	t.Helper()
	ctx := context.Background()
	db := tr.Store()
	u, err := db.AddUser(ctx, "owner", "owner's long password")
	if err != nil {
		t.Fatal(err)
	}
	tr.tokens = map[string]string{}
	for _, h := range hubs {
		if err := db.SetHubOwner(ctx, h, "owner"); err != nil {
			t.Fatal(err)
		}
		secret, _, err := db.CreateToken(ctx, store.TokenSpec{Hub: h, Label: "test", Ports: store.PortsAll})
		if err != nil {
			t.Fatal(err)
		}
		tr.tokens[h] = secret
	}
	if tr.session, _, err = db.CreateSession(ctx, u.ID, time.Hour, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
}

// auth is the Authorization header line that carries hub's token.
func (tr *testRelay) auth(hub string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("hubtunnel:"+tr.tokens[hub])) + "\r\n"
}

// cookie is the Cookie header line of the owner's session, on a TLS port
// or a plain one.
func (tr *testRelay) cookie(tls bool) string {
	return "Cookie: " + cookieName(tls) + "=" + tr.session + "\r\n"
}
