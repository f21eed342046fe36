package portal

import (
	"encoding/hex"
	"html"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/enroll"
	"github.com/hubtunnel/hubtunnel/store"
)

var enrollCodeRE = regexp.MustCompile(`id="enroll-code"[^>]*>([^<]+)</code>`)

// shownCode is the enrollment code on a page, as a person reads it; ""
// when the page shows none.
func shownCode(body string) string {
	if m := enrollCodeRE.FindStringSubmatch(body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

func TestAddHubShowsTheCodeOnceWithItsQRCodeAndCommand(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	r := alice.get("/")
	wantIn(t, r.body, `id="add-hub-form"`, `action="/hub/add"`, `name="name"`, english.AddHub, "http://garage.hubs.test/")
	wantNotIn(t, r.body, `id="waiting"`, `data-reload`, `http-equiv="refresh"`)

	// Typed as a person might: capitals, a space after it.
	r = alice.act("/hub/add", "name", "Garage ")
	wantStatus(t, r, http.StatusOK)
	shown := shownCode(r.body)
	code, err := enroll.Parse(shown)
	if err != nil {
		t.Fatalf("the page's code %q does not parse: %v\n%s", shown, err, r.body)
	}
	if code.Relay != relayAgentAddr || !regexp.MustCompile(`/[0-9A-Z]{4}(-[0-9A-Z]{1,4}){4}$`).MatchString(shown) {
		t.Errorf("code %q: want relay %s and the secret in groups of four", shown, relayAgentAddr)
	}
	wantIn(t, r.body, `id="new-code-hub">garage<`, `<svg id="enroll-qr"`, `id="enroll-command">hubtunnel enroll `+shown+`<`,
		english.NewCodeValid+` <time datetime="2026-06-02T12:00:00Z">`, english.NewCodeWorksOnce, english.NewCodeAddon, `id="new-code-done" href="/"`)
	// Not yet a hub; its code waits, and the answer is no page to reload
	// (that would lose the code).
	wantIn(t, r.body, `id="waiting-garage"`, english.WaitingCode)
	wantNotIn(t, r.body, `data-reload`, `id="hub-garage"`)

	id := code.ID()
	c, err := e.st.EnrollCodeByID(ctx, hex.EncodeToString(id[:]))
	check(t, err)
	if c.Hub != "garage" || c.Owner != "alice" || c.CreatedBy != "alice" || !c.Pending(e.clock.Now()) {
		t.Fatalf("stored code %+v", c)
	}
	ev := e.eventsOf(store.KindEnroll)
	if len(ev) != 1 || ev[0].User != "alice" || ev[0].Hub != "garage" || ev[0].Outcome != "ok" || ev[0].Detail != "enrollment code made, valid until 2026-06-02T12:00:00Z" {
		t.Fatalf("audit %+v", ev)
	}

	// Shown once: the home page lists the hub as waiting, without its code,
	// and reloads itself (with and without the page's script).
	r = alice.get("/")
	if shownCode(r.body) != "" {
		t.Fatal("the home page shows the code again")
	}
	wantNotIn(t, r.body, shown, shown[strings.LastIndexByte(shown, '/')+1:])
	wantIn(t, r.body, `id="waiting-garage"`, english.WaitingCode, english.Withdraw, `<body data-reload="5">`, `<noscript><meta http-equiv="refresh" content="5"></noscript>`)
	// Other users see nothing of it.
	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	wantNotIn(t, bob.get("/").body, `id="waiting-garage"`, "data-reload")

	// In German too.
	alice.lang = "de"
	wantIn(t, alice.act("/hub/add", "name", "keller").body, german.NewCodeTitle, german.NewCodeWorksOnce, german.Waiting)
}

func TestAddHubRefusesWhatItCannotDoBesideTheField(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	wantStatus(t, bob.act("/hub/add", "name", "shed"), http.StatusOK)

	for _, c := range []struct {
		name   string
		status int
		msg    string
	}{
		{"", 400, english.ErrHubName},
		{"-garage", 400, english.ErrHubName},
		{"garage-", 400, english.ErrHubName},
		{"my_garage", 400, english.ErrHubName},
		{"my garage", 400, english.ErrHubName},
		{"gäste", 400, english.ErrHubName},
		{"garage.hubs.test", 400, english.ErrHubName},
		{strings.Repeat("g", 64), 400, english.ErrHubName},
		{"home", 409, english.ErrHubNameTaken},  // alice's own hub
		{"shed", 409, english.ErrHubNameTaken},  // bob's code waits for it
		{"HOME", 409, english.ErrHubNameTaken},  // the same name
		{"cabin", 409, english.ErrHubNameTaken}, // a hub
	} {
		r := alice.act("/hub/add", "name", c.name)
		if r.StatusCode != c.status {
			t.Errorf("%q: %s, want %d", c.name, r.Status, c.status)
		}
		// The message is beside the field, which keeps what was typed.
		if got := field(t, r.body, "add-hub-error"); got != html.EscapeString(c.msg) {
			t.Errorf("%q: message %q, want %q", c.name, got, c.msg)
		}
		if got := html.UnescapeString(field(t, r.body, "add-hub-name")); got != strings.ToLower(strings.TrimSpace(c.name)) {
			t.Errorf("%q: the field holds %q", c.name, got)
		}
		if shownCode(r.body) != "" {
			t.Errorf("%q: a code is shown", c.name)
		}
	}
	aliceID := mustUser(t, e, "alice").ID
	if cs, _ := e.st.EnrollCodes(ctx, aliceID); len(cs) != 0 {
		t.Fatalf("refused names made codes: %+v", cs)
	}

	// A disabled account makes none, even with a session left over.
	dave := e.browser("192.0.2.7")
	check(t, e.st.SetDisabled(ctx, "dave", false))
	dave.login("dave", davePW)
	csrf := dave.csrf()
	check(t, e.st.SetDisabled(ctx, "dave", true))
	r := dave.post("/hub/add", "csrf", csrf, "name", "davehub")
	if r.StatusCode != http.StatusForbidden && r.StatusCode != http.StatusSeeOther {
		t.Errorf("a disabled account: %s", r.Status)
	}
	if cs, _ := e.st.EnrollCodes(ctx, mustUser(t, e, "dave").ID); len(cs) != 0 {
		t.Fatalf("a disabled account made a code: %+v", cs)
	}
}

func TestAtMostFiveCodesWaitPerUser(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	for _, name := range []string{"a1", "a2", "a3", "a4", "a5"} {
		wantStatus(t, alice.act("/hub/add", "name", name), http.StatusOK)
	}
	r := alice.act("/hub/add", "name", "a6")
	wantStatus(t, r, http.StatusTooManyRequests)
	if got := field(t, r.body, "add-hub-error"); got != html.EscapeString(english.ErrTooManyCodes) {
		t.Fatalf("message %q", got)
	}
	// Another user has a limit of their own.
	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	wantStatus(t, bob.act("/hub/add", "name", "b1"), http.StatusOK)

	// A withdrawn code makes room, so does an expired one.
	wantStatus(t, alice.act("/hub/withdraw", "hub", "a1"), http.StatusSeeOther)
	wantStatus(t, alice.act("/hub/add", "name", "a6"), http.StatusOK)
	wantStatus(t, alice.act("/hub/add", "name", "a7"), http.StatusTooManyRequests)
	e.clock.Add(24*time.Hour + time.Second)
	alice.login("alice", alicePW) // the session ended meanwhile
	wantStatus(t, alice.act("/hub/add", "name", "a7"), http.StatusOK)
	// Expired codes are not waiting: not listed, and the page does not
	// reload for them.
	r = alice.get("/")
	wantIn(t, r.body, `id="waiting-a7"`)
	wantNotIn(t, r.body, `id="waiting-a2"`, `id="waiting-a6"`)
}

func TestWithdrawEndsTheCodeOnlyForItsOwner(t *testing.T) {
	e := newEnv(t)
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	bob := e.browser("198.51.100.2")
	bob.login("bob", bobPW)
	code, err := enroll.Parse(shownCode(alice.act("/hub/add", "name", "garage").body))
	check(t, err)
	id := code.ID()

	// Bob cannot withdraw alice's code, nor learn it exists.
	r := bob.act("/hub/withdraw", "hub", "garage")
	wantStatus(t, r, http.StatusNotFound)
	wantIn(t, r.body, english.ErrNoSuchCode)
	if _, err := e.st.EnrollCodeByID(ctx, hex.EncodeToString(id[:])); err != nil {
		t.Fatalf("bob withdrew alice's code: %v", err)
	}
	wantStatus(t, alice.act("/hub/withdraw", "hub", "nothing"), http.StatusNotFound)

	r = alice.act("/hub/withdraw", "hub", "garage")
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/?ok=code-withdrawn" {
		t.Fatalf("went to %q", loc)
	}
	if _, err := e.st.EnrollCodeByID(ctx, hex.EncodeToString(id[:])); err == nil {
		t.Fatal("the withdrawn code is still in the store")
	}
	r = alice.get("/?ok=code-withdrawn")
	wantIn(t, r.body, english.OkCodeWithdrawn)
	wantNotIn(t, r.body, `id="waiting-garage"`, "data-reload")
	ev := e.eventsOf(store.KindEnroll)
	if len(ev) != 2 || ev[1].Detail != "enrollment code withdrawn" || ev[1].Hub != "garage" || ev[1].User != "alice" {
		t.Fatalf("audit %+v", ev)
	}
	// The name is free again.
	wantStatus(t, alice.act("/hub/add", "name", "garage"), http.StatusOK)
	// A used code cannot be withdrawn: the hub is there.
	code, err = enroll.Parse(shownCode(alice.act("/hub/add", "name", "barn").body))
	check(t, err)
	id = code.ID()
	_, err = e.st.UseEnrollCode(ctx, hex.EncodeToString(id[:]), "barn-key", "203.0.113.9", testRelayIP)
	check(t, err)
	wantStatus(t, alice.act("/hub/withdraw", "hub", "barn"), http.StatusNotFound)
}

func TestTheHomePageReloadsUntilTheEnrolledHubIsOnline(t *testing.T) {
	var mu sync.Mutex
	online := map[string]bool{}
	e := newEnv(t, func(c *Config) {
		c.Online = func(hub string) bool { mu.Lock(); defer mu.Unlock(); return online[hub] }
	})
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	code, err := enroll.Parse(shownCode(alice.act("/hub/add", "name", "garage").body))
	check(t, err)
	wantIn(t, alice.get("/").body, `data-reload="5"`, english.WaitingCode)

	// The agent enrolls: the hub is alice's, not yet connected.
	id := code.ID()
	e.clock.Add(time.Minute)
	_, err = e.st.UseEnrollCode(ctx, hex.EncodeToString(id[:]), "garage-key", "203.0.113.9", testRelayIP)
	check(t, err)
	r := alice.get("/")
	wantIn(t, r.body, `id="waiting-garage"`, english.WaitingConnect, `data-reload="5"`, `id="hub-garage"`)
	wantIn(t, r.body, `href="http://garage.hubs.test/">garage</a></td><td class="state offline">`)
	wantNotIn(t, r.body, `name="hub" value="garage"><button class="revoke" type="submit">`+english.Withdraw)

	// It connects: online, no longer waiting, no more reloads.
	mu.Lock()
	online["garage"] = true
	mu.Unlock()
	r = alice.get("/")
	wantIn(t, r.body, `href="http://garage.hubs.test/">garage</a></td><td class="state online">`+english.Online)
	wantNotIn(t, r.body, `id="waiting-garage"`, "data-reload", "http-equiv")

	// A hub that never connects is not waited for forever.
	mu.Lock()
	online["garage"] = false
	mu.Unlock()
	wantIn(t, alice.get("/").body, `data-reload="5"`)
	e.clock.Add(connectWait)
	wantNotIn(t, alice.get("/").body, `id="waiting-garage"`, "data-reload")
}

func TestWithoutEnrollCodesTheHomePageOffersNoAddHub(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EnrollCode = nil })
	alice := e.browser("192.0.2.1")
	alice.login("alice", alicePW)
	wantNotIn(t, alice.get("/").body, `id="add-hub-form"`, "/hub/add")
	wantStatus(t, alice.act("/hub/add", "name", "garage"), http.StatusNotFound)
}

// testRelayIP is the relay's tunnel address, after which hubs get theirs.
var testRelayIP = netip.MustParseAddr("100.96.0.1")
