package version

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Compare orders two versions of the form MAJOR.MINOR.PATCH[-PRE][+BUILD]
// as semantic versioning does: 0.2.0-dev.g1a2b3c < 0.2.0 < 0.10.0, and
// BUILD is ignored. It returns -1, 0 or +1, or an error naming a version
// that is not of that form ("dev", a bare commit hash).
func Compare(a, b string) (int, error) {
	va, err := parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := parse(b)
	if err != nil {
		return 0, err
	}
	for i := range 3 {
		if c := cmp.Compare(va.core[i], vb.core[i]); c != 0 {
			return c, nil
		}
	}
	return comparePre(va.pre, vb.pre), nil
}

// Valid reports whether s is a version Compare understands.
func Valid(s string) bool {
	_, err := parse(s)
	return err == nil
}

type parsed struct {
	core [3]uint64
	pre  []string
}

func parse(s string) (parsed, error) {
	var v parsed
	bad := func() (parsed, error) {
		return parsed{}, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH, e.g. 0.2.0", s)
	}
	if len(s) > 64 {
		return bad()
	}
	rest, _, _ := strings.Cut(s, "+")
	rest, pre, hasPre := strings.Cut(rest, "-")
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return bad()
	}
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil || (len(p) > 1 && p[0] == '0') {
			return bad()
		}
		v.core[i] = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
		for _, id := range v.pre {
			if id == "" || strings.Trim(id, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") != "" {
				return bad()
			}
		}
	}
	return v, nil
}

// comparePre orders pre-release identifiers: none ranks above any;
// numeric ones compare as numbers and below alphanumeric ones.
func comparePre(a, b []string) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		na, ea := strconv.ParseUint(a[i], 10, 64)
		nb, eb := strconv.ParseUint(b[i], 10, 64)
		var c int
		switch {
		case ea == nil && eb == nil:
			c = cmp.Compare(na, nb)
		case ea == nil:
			c = -1
		case eb == nil:
			c = 1
		default:
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}
