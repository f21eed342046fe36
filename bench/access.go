package bench

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// access measures what checking who a request comes from costs, with the
// relay's own benchmarks (relay/proxy_bench_test.go) in one go test run:
// the check on a kept-alive connection whose decision stands, against the
// whole request it is part of (a GET, and a small POST whose body the
// relay sends with its head, each against the tunnel alone); the store
// lookup of a connection's first request; and a browser's login
// (argon2id at the store's default cost).
func (ru *run) access() error {
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^(BenchmarkAuthorize|BenchmarkKeptAliveRequest|BenchmarkLogin)$",
		"-benchtime", "2s", "-count", "1", "./relay/")
	cmd.Dir = ru.o.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench ./relay/: %v\n%s", err, out)
	}
	ns := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op`).FindAllStringSubmatch(string(out), -1) {
		ns[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	check, request := ns["BenchmarkAuthorize/kept_alive"], ns["BenchmarkKeptAliveRequest/relay/GET"]
	post, tunGet, tunPost := ns["BenchmarkKeptAliveRequest/relay/POST"], ns["BenchmarkKeptAliveRequest/tunnel_only/GET"], ns["BenchmarkKeptAliveRequest/tunnel_only/POST"]
	token, session, login := ns["BenchmarkAuthorize/first,_token"], ns["BenchmarkAuthorize/first,_session"], ns["BenchmarkLogin"]
	if check == 0 || request == 0 || post == 0 || tunGet == 0 || tunPost == 0 || token == 0 || session == 0 || login == 0 {
		return fmt.Errorf("go test -bench ./relay/ printed no figure for every benchmark:\n%s", out)
	}
	ru.logf("bench:   access check %.0f ns of a %.0f µs request; first request %.2f / %.2f ms; login %.0f ms", check, request/1e3, token/1e6, session/1e6, login/1e6)
	ru.r.add("access", "access check on a kept-alive connection (go test): of the whole request",
		fmt.Sprintf("%.0f ns of %.0f µs (%.3f %%)", check, request/1e3, 100*check/request), "nothing measurable", ptr(check/request < 0.01))
	ru.r.add("access", "a kept-alive request, relay and tunnel in one process (go test): GET / 250-byte POST, against the tunnel alone",
		fmt.Sprintf("%.0f µs / %.0f µs, tunnel alone %.0f µs / %.0f µs (relay adds %.0f / %.0f µs)", request/1e3, post/1e3, tunGet/1e3, tunPost/1e3, (request-tunGet)/1e3, (post-tunPost)/1e3), "", nil)
	ru.r.add("access", "first request of a connection: the store's decision, token / session (go test, SQLite)",
		fmt.Sprintf("%.2f ms / %.2f ms", token/1e6, session/1e6), "", nil)
	ru.r.add("access", "a browser's login through the relay (go test: TLS, argon2id 64 MiB × 2, session)",
		fmt.Sprintf("%.0f ms", login/1e6), "", nil)
	return nil
}
