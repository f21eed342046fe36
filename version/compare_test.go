package version

import "testing"

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"0.1.0", "0.1.0", 0},
		{"0.1.0", "0.2.0", -1},
		{"0.10.0", "0.9.9", 1},
		{"1.0.0", "0.99.99", 1},
		{"0.2.0-dev.g1a2b3c", "0.2.0", -1},
		{"0.2.0-dev.g1a2b3c", "0.1.9", 1},
		{"0.2.0-rc.2", "0.2.0-rc.10", -1},
		{"0.2.0-rc.1", "0.2.0-rc.1.1", -1},
		{"0.2.0-1", "0.2.0-alpha", -1},
		{"0.2.0+build.5", "0.2.0", 0},
	} {
		got, err := Compare(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("Compare(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
		if back, _ := Compare(c.b, c.a); back != -c.want {
			t.Errorf("Compare(%q, %q) = %d; want %d", c.b, c.a, back, -c.want)
		}
	}
}

func TestCompareRejects(t *testing.T) {
	for _, s := range []string{"", "dev", "93654ef", "1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3-a..b", "1.2.3-ä", "v1.2.3", "1.2.-3"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
		if _, err := Compare(s, "1.0.0"); err == nil {
			t.Errorf("Compare(%q, 1.0.0): no error", s)
		}
	}
}
