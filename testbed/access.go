package testbed

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/url"
	"time"

	"github.com/hubtunnel/hubtunnel/store"
)

// A bed's relay refuses requests without a credential, as every relay
// does. NewRelay therefore prepares the relay's store before the relay
// first opens it: the bed's hubs (as the relay's own import at start will
// find them, unchanged), an owner of them all with a password only the
// bed knows, and one operator token per hub that opens all its ports.
// Tests and the bench send that token as HTTP Basic credentials (user
// TokenUser, password the token): in the URL's user info for clients that
// turn it into an Authorization header (Go's net/http, curl, Python), or
// as AuthHeader's line for raw requests and wrk.

// TokenUser is the user name a bed's clients send with an app token; the
// relay takes any name with a token.
const TokenUser = "hubtunnel"

// OwnerName is the name of the user who owns every hub of a bed.
const OwnerName = "owner"

// prepareStore opens the relay's store at r.Store and puts the hubs, the
// owner and the tokens in it.
func (r *Relay) prepareStore() error {
	// Thousands of hubs (the bench's hubs phase) take one SQLite commit
	// each for the owner and the token.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db, err := store.Open(ctx, r.Store, store.Options{})
	if err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	defer db.Close()
	specs := make([]store.HubSpec, len(r.Hubs))
	for i, h := range r.Hubs {
		specs[i] = store.HubSpec{Name: h.Name, PublicKey: h.Key.Public().String(), TunnelIP: h.TunnelIP}
	}
	if _, err := db.ImportHubs(ctx, specs); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	r.OwnerPassword = randomPassword()
	if _, err := db.AddUser(ctx, OwnerName, r.OwnerPassword); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	r.Owner = OwnerName
	r.tokens = make(map[string]string, len(r.Hubs))
	for _, h := range r.Hubs {
		if err := db.SetHubOwner(ctx, h.Name, OwnerName); err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
		secret, _, err := db.CreateToken(ctx, store.TokenSpec{Hub: h.Name, Ports: store.PortsAll, Label: "testbed"})
		if err != nil {
			return fmt.Errorf("testbed: %w", err)
		}
		r.tokens[h.Name] = secret
	}
	return db.Close()
}

// randomPassword is 24 random base64url characters.
func randomPassword() string {
	b := make([]byte, 18)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Token is the app token for hub, opening all its ports; "" when the bed
// has no such hub.
func (r *Relay) Token(hub string) string { return r.tokens[hub] }

// AuthHeader is the Authorization header's value that carries hub's token,
// for clients that write their own request heads.
func (r *Relay) AuthHeader(hub string) string { return BasicAuth(r.Token(hub)) }

// BasicAuth is the Authorization header's value that carries token.
func BasicAuth(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(TokenUser+":"+token))
}

// TokenURL is URL carrying hub's token as user info:
// http://hubtunnel:htk_…@HUB.localhost:PORT+offset/PATH.
func (r *Relay) TokenURL(hub string, port int, path string) string {
	return r.TokenURLScheme("http", hub, port, path)
}

// TokenURLScheme is TokenURL with another scheme, e.g. https for the TLS
// ports.
func (r *Relay) TokenURLScheme(scheme, hub string, port int, path string) string {
	return WithToken(r.URLScheme(scheme, hub, port, path), r.Token(hub))
}

// WithToken puts token into rawURL as user info (user TokenUser), e.g. to
// send one hub's token to another hub's name. rawURL is one of the bed's
// URLs; one that does not parse is returned as it is.
func WithToken(rawURL, token string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	u.User = url.UserPassword(TokenUser, token)
	return u.String()
}

// Redacted is rawURL with the password of its user info, if any, shown as
// "xxxxx": for error messages and logs, which never carry a token.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}
