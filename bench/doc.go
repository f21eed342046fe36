// Package bench measures hubtunnel against the budgets of BRIEF.md: the real
// binaries (hubrelay, hubtunnel, ccusim) run as separate processes on
// loopback, and the bench drives them as a user, an app or an operator
// would, then reads what it needs from outside: bytes on the wire (tshark),
// memory (/proc/PID/status), time until a request succeeds.
//
// cmd/hubbench wires the phases together and writes BENCHMARKS.md; `make
// bench` runs it. The in-process benchmarks in this package's _test files
// model the same data path in one process for pprof.
//
// The bench must never send a packet anywhere but loopback, and every loop
// in it is bounded in count and in time: a phase that cannot finish fails
// with a message rather than hanging. Nothing here is imported by the
// product, and nothing here changes the product's code or configuration
// defaults: what the bench sets, a config file could set.
package bench
