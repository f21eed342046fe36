package panel

import (
	"regexp"
	"testing"
)

// sessionID takes what the regular expression it replaced took.
func TestSessionIDAsTheRegexpDid(t *testing.T) {
	sidPattern := regexp.MustCompile(`^@?([A-Za-z0-9]{10})@?$`)
	for _, sid := range []string{"@abcDEF0123@", "abcDEF0123", "@abcDEF0123", "abcDEF0123@", "@@abcDEF0123@", "abcDEF012", "abcDEF01234", "abcDEF012-", "@abcDEF0123@@", "äbcDEF0123", "", "@", "@@"} {
		id, ok := sessionID(sid)
		m := sidPattern.FindStringSubmatch(sid)
		if ok != (m != nil) || ok && id != m[1] {
			t.Errorf("sessionID(%q) = %q %v, regexp %q", sid, id, ok, m)
		}
	}
}
