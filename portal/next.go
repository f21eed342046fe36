package portal

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// maxNext bounds a next URL; a longer one is dropped.
const maxNext = 4096

// hubLabelRE is a hub's name: one DNS label, as the relay's config takes it.
var hubLabelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// HubHostOf reports whether next is an http or https URL on a hub host of
// domain — NAME.<domain>, NAME one DNS label, any port — and returns that
// host in lower case, without the port. It refuses everything that could
// lead a browser elsewhere: other hosts and schemes, user info
// (https://hub.example.com@evil), backslashes, spaces and control
// characters (which browsers strip or turn into slashes), scheme-relative
// and opaque forms, and a path that does not start with exactly one slash.
// The relay uses it too, for the next of its own redirects.
func HubHostOf(next, domain string) (host string, ok bool) {
	u, ok := parseAbsNext(next)
	if !ok {
		return "", false
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	name, found := strings.CutSuffix(strings.ToLower(u.Hostname()), "."+domain)
	if domain == "" || !found || !hubLabelRE.MatchString(name) {
		return "", false
	}
	return name + "." + domain, true
}

// parseAbsNext parses next as an absolute http(s) URL with a host and
// nothing that could confuse a browser about where it leads.
func parseAbsNext(next string) (*url.URL, bool) {
	if !cleanNext(next) {
		return nil, false
	}
	u, err := url.Parse(next)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return nil, false
	}
	// Only "scheme://" followed by the host: not "https:/\evil", not
	// "https:///evil".
	if rest := next[len(u.Scheme):]; !strings.HasPrefix(rest, "://") || strings.HasPrefix(rest, ":///") {
		return nil, false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, false
		}
	}
	if !pathOK(u.EscapedPath(), true) {
		return nil, false
	}
	return u, true
}

// cleanNext refuses what browsers read differently from Go's url package:
// backslashes, whitespace and control characters; and anything too long.
func cleanNext(next string) bool {
	if next == "" || len(next) > maxNext {
		return false
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c <= ' ' || c == '\\' || c == 0x7f {
			return false
		}
	}
	return true
}

// pathOK: a path starts with exactly one slash ("" only where allowed), so
// that as a Location it names no other host ("//evil", "/\evil").
func pathOK(p string, emptyOK bool) bool {
	if p == "" {
		return emptyOK
	}
	return p[0] == '/' && !strings.HasPrefix(p, "//")
}

// target is where a login goes once it is done.
type target struct {
	hubHost string // "" for the portal itself
	path    string // a path with its query: on the hub host, or the portal's
}

// parseNext reads a next parameter: a URL on a hub host (HubHostOf), or a
// path on the portal. ok is false for anything else, which the portal
// drops (a login then goes home).
func parseNext(next, domain string) (t target, ok bool) {
	if next == "" {
		return target{}, false
	}
	if host, ok := HubHostOf(next, domain); ok {
		u, _ := parseAbsNext(next)
		return target{hubHost: host, path: pathQuery(u)}, true
	}
	if !cleanNext(next) || !pathOK(next, false) {
		return target{}, false
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !pathOK(u.EscapedPath(), false) {
		return target{}, false
	}
	return target{path: pathQuery(u)}, true
}

// pathQuery is u's path and query, "/" for none, without the fragment.
func pathQuery(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p
}
