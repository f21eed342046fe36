package relay

import "testing"

func TestDebugListenIsLoopbackOnly(t *testing.T) {
	for _, c := range []struct {
		addr string
		ok   bool
	}{
		{"", true},
		{"127.0.0.1:9000", true},
		{"[::1]:9000", true},
		{"0.0.0.0:9000", false},
		{":9000", false},
		{"192.0.2.1:9000", false},
		{"localhost:9000", false},
		{"127.0.0.1", false},
	} {
		if err := checkDebugListen(c.addr); (err == nil) != c.ok {
			t.Errorf("debug_listen %q: err %v; want ok %v", c.addr, err, c.ok)
		}
	}
}
