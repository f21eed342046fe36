package portal

import (
	"html"
	"image"
	"image/color"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	qr "github.com/piglig/go-qr"

	"github.com/hubtunnel/hubtunnel/store"
)

// RFC 6238, appendix B: the SHA-1 vectors, cut to 6 digits.
func TestHOTPMatchesRFC6238(t *testing.T) {
	key := []byte("12345678901234567890")
	for _, c := range []struct {
		unix int64
		want string
	}{
		{59, "287082"}, {1111111109, "081804"}, {1111111111, "050471"},
		{1234567890, "005924"}, {2000000000, "279037"}, {20000000000, "353130"},
	} {
		if got := hotp(key, totpCounter(time.Unix(c.unix, 0))); got != c.want {
			t.Errorf("at %d: %s, want %s", c.unix, got, c.want)
		}
	}
}

func TestTOTPGuardTakesNeighbourStepsOnceEach(t *testing.T) {
	g := newTOTPGuard()
	secret := newTOTPSecret()
	key, err := totpKey(secret)
	check(t, err)
	now := time.Date(2026, 6, 1, 12, 0, 10, 0, time.UTC)
	at := func(d time.Duration) string { return hotp(key, totpCounter(now.Add(d))) }
	for _, c := range []struct {
		name string
		code string
		want bool
	}{
		{"two steps back", at(-60 * time.Second), false},
		{"a step back", at(-30 * time.Second), true},
		{"the same again", at(-30 * time.Second), false},
		{"now", at(0), true},
		{"now, replayed", at(0), false},
		{"a step ahead", at(30 * time.Second), true},
		{"the step before, after a later one", at(0), false},
		{"two steps ahead", at(60 * time.Second), false},
		{"not digits", "12a456", false},
		{"too short", "12345", false},
	} {
		if got := g.check(1, secret, c.code, now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Another user's codes are their own.
	if !g.check(2, secret, at(0), now) {
		t.Error("user 2's code was taken as a replay of user 1's")
	}
}

var (
	secretRE = regexp.MustCompile(`id="totp-secret">([A-Z2-7 ]+)<`)
	qrPathRE = regexp.MustCompile(`<svg id="totp-qr"[^>]*viewBox="0 0 (\d+) (\d+)".*?<path fill="#000" d="([^"]*)"`)
	moduleRE = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-\d+z`)
)

// scanQR reads the TOTP page's QR code as a phone would: the SVG's
// modules drawn into an image, decoded.
func scanQR(t *testing.T, body string) string {
	t.Helper()
	m := qrPathRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no QR code in\n%s", body)
	}
	size, _ := strconv.Atoi(m[1])
	const scale = 6
	img := image.NewGray(image.Rect(0, 0, size*scale, size*scale))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for _, mod := range moduleRE.FindAllStringSubmatch(m[3], -1) {
		x, _ := strconv.Atoi(mod[1])
		y, _ := strconv.Atoi(mod[2])
		n, _ := strconv.Atoi(mod[3])
		for px := x * scale; px < (x+n)*scale; px++ {
			for py := y * scale; py < (y+1)*scale; py++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	text, err := qr.Decode(img)
	if err != nil {
		t.Fatalf("the QR code does not scan: %v", err)
	}
	return text
}

// enrol turns TOTP on for b's user through the pages and returns the
// secret, as the user's app keeps it.
func enrol(t *testing.T, e *env, b *browser, user string) string {
	t.Helper()
	r := b.get("/totp")
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="totp-form"`, `id="totp-qr"`, english.TOTPIsOff)
	m := secretRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no secret on the page")
	}
	secret := strings.ReplaceAll(m[1], " ", "")
	e.secret(secret)
	if got, want := html.UnescapeString(scanQR(t, r.body)), "otpauth://totp/hubtunnel:"+user+"?secret="+secret+"&issuer=hubtunnel"; got != want {
		t.Fatalf("QR code says %q, want %q", got, want)
	}
	csrf := csrfRE.FindStringSubmatch(r.body)[1]

	r = b.post("/totp", "csrf", csrf, "code", wrongCode(t, e, secret))
	wantStatus(t, r, http.StatusBadRequest)
	wantIn(t, r.body, english.ErrBadCode)
	if m := secretRE.FindStringSubmatch(r.body); m == nil || strings.ReplaceAll(m[1], " ", "") != secret {
		t.Fatal("a wrong code changed the secret being enrolled")
	}
	code := codeAt(t, e, secret, 0)
	r = b.post("/totp", "csrf", csrf, "code", code[:3]+" "+code[3:])
	wantStatus(t, r, http.StatusSeeOther)
	u, err := e.st.UserByName(ctx, user)
	check(t, err)
	if !u.HasTOTP {
		t.Fatal("TOTP is not on in the store")
	}
	stored, err := e.st.TOTPSecret(ctx, u.ID)
	check(t, err)
	if stored != secret {
		t.Fatal("the store has another secret than the page showed")
	}
	return secret
}

// codeAt is the secret's code at the test clock plus d, as an
// authenticator app shows it.
func codeAt(t *testing.T, e *env, secret string, d time.Duration) string {
	t.Helper()
	key, err := totpKey(secret)
	check(t, err)
	code := hotp(key, totpCounter(e.clock.Now().Add(d)))
	e.secret(code)
	return code
}

// wrongCode is a code that is none of the secret's codes around now.
func wrongCode(t *testing.T, e *env, secret string) string {
	t.Helper()
	key, err := totpKey(secret)
	check(t, err)
	now := totpCounter(e.clock.Now())
	for n := 0; ; n++ {
		c := strconv.Itoa(100000 + n)
		if c != hotp(key, now-1) && c != hotp(key, now) && c != hotp(key, now+1) {
			return c
		}
	}
}

var pendingRE = regexp.MustCompile(`name="pending" value="([^"]+)"`)

// passwordStep logs in with a password and returns the pending id of the
// code step.
func passwordStep(t *testing.T, b *browser, user, pw, next string) string {
	t.Helper()
	r := b.post("/login", "user", user, "password", pw, "next", next)
	wantStatus(t, r, http.StatusOK)
	wantIn(t, r.body, `id="code-form"`, `name="code"`)
	if len(r.Cookies()) != 0 {
		t.Fatal("the password alone set a cookie")
	}
	m := pendingRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatal("no pending login")
	}
	b.e.secret(m[1])
	return m[1]
}

func TestTOTPEnrolmentAndLoginWithRightWrongAndReplayedCodes(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	b.login("alice", alicePW)
	secret := enrol(t, e, b, "alice")
	if ev := e.eventsOf(KindTOTP); len(ev) != 1 || ev[0].Outcome != "on" || ev[0].User != "alice" {
		t.Fatalf("audit %+v", ev)
	}
	wantIn(t, b.get("/").body, english.TOTPIsOn)
	enrolCode := codeAt(t, e, secret, 0)

	b2 := e.browser("198.51.100.2")
	pending := passwordStep(t, b2, "alice", alicePW, "https://home.hubs.test/")
	// Wrong, then the code already used for the enrolment: both refused.
	for _, code := range []string{wrongCode(t, e, secret), enrolCode} {
		r := b2.post("/login", "pending", pending, "code", code)
		wantStatus(t, r, http.StatusUnauthorized)
		wantIn(t, r.body, english.ErrBadCode, `id="code-form"`)
		if len(r.Cookies()) != 0 {
			t.Fatalf("code %s logged in", code)
		}
	}
	e.clock.Add(30 * time.Second)
	code := codeAt(t, e, secret, 0)
	r := b2.post("/login", "pending", pending, "code", code)
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "http://home.hubs.test/.hubtunnel/auth?") {
		t.Fatalf("went to %q, not through the hand-off kept from the password step", loc)
	}
	if _, err := e.st.Session(ctx, b2.cookies["hubtunnel"]); err != nil {
		t.Fatal(err)
	}
	// The same code, in another login within its window: refused.
	b3 := e.browser("198.51.100.3")
	p3 := passwordStep(t, b3, "alice", alicePW, "")
	wantStatus(t, b3.post("/login", "pending", p3, "code", code), http.StatusUnauthorized)
	// A pending login is spent: the same id cannot be used again.
	wantStatus(t, b2.post("/login", "pending", pending, "code", codeAt(t, e, secret, 30*time.Second)), http.StatusBadRequest)

	var details []string
	for _, ev := range e.eventsOf(store.KindLogin) {
		details = append(details, ev.Outcome+": "+ev.Detail)
	}
	want := []string{"ok: password", "failed: " + whyWrongCode, "failed: " + whyWrongCode, "ok: password and TOTP code", "failed: " + whyWrongCode}
	if strings.Join(details, "|") != strings.Join(want, "|") {
		t.Fatalf("audit %q, want %q", details, want)
	}
}

func TestPendingLoginEndsAfterFiveTriesOrFiveMinutes(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	b.login("carol", carolPW)
	secret := enrol(t, e, b, "carol")
	e.clock.Add(time.Minute)

	b2 := e.browser("198.51.100.2")
	pending := passwordStep(t, b2, "carol", carolPW, "")
	for i := 1; i <= pendingLoginTries; i++ {
		r := b2.post("/login", "pending", pending, "code", wrongCode(t, e, secret))
		if i < pendingLoginTries {
			wantStatus(t, r, http.StatusUnauthorized)
			wantIn(t, r.body, `id="code-form"`)
		} else {
			wantIn(t, r.body, english.ErrLoginExpired, `id="login-form"`)
		}
	}
	// Five wrong codes locked the account, as five wrong passwords would.
	wantStatus(t, b2.post("/login", "pending", pending, "code", codeAt(t, e, secret, 0)), http.StatusBadRequest)
	wantStatus(t, b2.post("/login", "user", "carol", "password", carolPW), http.StatusTooManyRequests)

	e.clock.Add(accountLock)
	pending = passwordStep(t, b2, "carol", carolPW, "")
	e.clock.Add(pendingLoginTTL)
	r := b2.post("/login", "pending", pending, "code", codeAt(t, e, secret, 0))
	wantStatus(t, r, http.StatusBadRequest)
	wantIn(t, r.body, english.ErrLoginExpired)
}

func TestTOTPOffNeedsACurrentCode(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	b.login("alice", alicePW)
	secret := enrol(t, e, b, "alice")
	e.clock.Add(30 * time.Second)
	r := b.get("/totp")
	wantIn(t, r.body, `id="totp-off-form"`, english.TOTPIsOn)
	wantNotIn(t, r.body, secret, `id="totp-qr"`)

	wantStatus(t, b.act("/totp/off", "code", wrongCode(t, e, secret)), http.StatusBadRequest)
	wantStatus(t, b.post("/totp/off", "code", codeAt(t, e, secret, 0)), http.StatusForbidden) // no CSRF token
	wantStatus(t, b.act("/totp/off", "code", codeAt(t, e, secret, 0)), http.StatusSeeOther)
	u, err := e.st.UserByName(ctx, "alice")
	check(t, err)
	if u.HasTOTP {
		t.Fatal("TOTP still on")
	}
	if ev := e.eventsOf(KindTOTP); len(ev) != 2 || ev[1].Outcome != "off" {
		t.Fatalf("audit %+v", ev)
	}
	// Logging in is one step again.
	e.browser("198.51.100.2").login("alice", alicePW)
}

func TestTOTPEnrolmentExpires(t *testing.T) {
	e := newEnv(t)
	b := e.browser("192.0.2.1")
	b.login("alice", alicePW)
	r := b.get("/totp")
	secret := strings.ReplaceAll(secretRE.FindStringSubmatch(r.body)[1], " ", "")
	e.secret(secret)
	e.clock.Add(pendingEnrolTTL)
	r = b.act("/totp", "code", codeAt(t, e, secret, 0))
	wantStatus(t, r, http.StatusBadRequest)
	wantIn(t, r.body, english.ErrEnrolExpired, `id="totp-qr"`)
	if m := secretRE.FindStringSubmatch(r.body); m == nil || strings.ReplaceAll(m[1], " ", "") == secret {
		t.Fatal("no new secret after the old one expired")
	}
	e.secret(strings.ReplaceAll(secretRE.FindStringSubmatch(r.body)[1], " ", ""))
}
