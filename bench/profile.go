package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// profiles are the in-process benchmarks profiled, one go test each so
// that each profile shows one kind of load.
var profiles = []string{"download-1", "download-8", "upload-1"}

// profile runs BenchmarkFullPath (fullpath_test.go) under go test with CPU
// and allocation profiles and puts pprof's top functions in the report.
func (ru *run) profile() error {
	dir := ru.o.Profile
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	testBin := filepath.Join(dir, "bench.test")
	var body strings.Builder
	fmt.Fprintf(&body, `BenchmarkFullPath (bench/fullpath_test.go) runs relay.Server, agent.Agent and the bulk server in one
process and moves data through the same path as the binaries (client → relay public port → relay netstack →
WireGuard → the agent's TCP connection on loopback → agent WireGuard → firewall → netstack → portmap → server),
so that one CPU and one allocation profile see all of it. Both ends share one Go runtime with
GOMAXPROCS=2 here (the binaries have two each), and the agent has no GOMEMLIMIT. Goroutines carry the pprof
label side=relay|agent|server|client. Each case ran as

    go test -run '^$' -bench 'BenchmarkFullPath/CASE$' -benchtime 3s -cpuprofile cpu-CASE.pprof ./bench/

and download-1 once more with -memprofile mem-download-1.pprof -memprofilerate 4096, with the profiles in %s (open them with `+"`go tool pprof %s cpu-CASE.pprof`"+`).
`, dir, testBin)
	resRE := regexp.MustCompile(`(?m)^BenchmarkFullPath/\S+.*$`)
	for _, c := range profiles {
		cpu := filepath.Join(dir, "cpu-"+c+".pprof")
		mem := filepath.Join(dir, "mem-"+c+".pprof")
		out, err := goTestBench(ru.o.Root, testBin, c, "-cpuprofile", cpu)
		if err != nil {
			return err
		}
		line := resRE.FindString(string(out))
		ru.logf("bench:   %s", line)
		if m := regexp.MustCompile(`([\d.]+) MB/s`).FindStringSubmatch(line); m != nil {
			var mbs float64
			fmt.Sscan(m[1], &mbs)
			ru.r.add("throughput", "in-process model (go test, one runtime): "+c, fmt.Sprintf("%.0f Mbit/s", mbs*8), "", nil)
		}
		fmt.Fprintf(&body, "\n### %s\n\n```\n%s\n```\n", c, strings.TrimSpace(line))
		tops := []struct {
			title string
			args  []string
		}{
			{"CPU by side (pprof label)", []string{"-tags"}},
			{"CPU, whole process, by flat time", []string{"-top", "-nodecount", "25"}},
			{"CPU, whole process, by cumulative time", []string{"-top", "-cum", "-nodecount", "30"}},
			{"CPU, agent side only", []string{"-top", "-nodecount", "15", "-tagfocus", "side=agent"}},
			{"CPU, relay side only", []string{"-top", "-nodecount", "15", "-tagfocus", "side=relay"}},
		}
		if c != "download-1" {
			tops = tops[:2]
		}
		for _, t := range tops {
			txt, err := pprofTop(ru.o.Root, testBin, cpu, t.args...)
			if err != nil {
				return err
			}
			fmt.Fprintf(&body, "\n%s:\n\n```\n%s\n```\n", t.title, txt)
		}
		if c == "download-1" {
			// A separate run: sampling every 4 KiB of allocation slows
			// the path, and allocations have no labels anyway.
			memOut, err := goTestBench(ru.o.Root, testBin, c, "-memprofile", mem, "-memprofilerate", "4096")
			if err != nil {
				return err
			}
			fmt.Fprintf(&body, "\nAllocations, a separate run with -memprofilerate 4096 (every 4 KiB sampled):\n\n```\n%s\n```\n", strings.TrimSpace(resRE.FindString(memOut)))
			for _, idx := range []string{"alloc_objects", "alloc_space"} {
				txt, err := pprofTop(ru.o.Root, testBin, mem, "-sample_index="+idx, "-top", "-nodecount", "12")
				if err != nil {
					return err
				}
				fmt.Fprintf(&body, "\n%s:\n\n```\n%s\n```\n", idx, txt)
			}
		}
	}
	ru.r.section("Profile", "%s", body.String())
	return nil
}

// goTestBench runs one case of BenchmarkFullPath with extra go test flags
// and returns go test's output.
func goTestBench(root, testBin, c string, flags ...string) (string, error) {
	args := append([]string{"test", "-run", "^$", "-bench", "^BenchmarkFullPath/" + c + "$", "-benchtime", "3s", "-count", "1", "-o", testBin}, flags...)
	cmd := exec.Command("go", append(args, "./bench/")...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go test -bench %s: %v\n%s", c, err, out)
	}
	return string(out), nil
}

// pprofTop runs go tool pprof and returns its table without the header
// lines that name files and the build.
func pprofTop(root, bin, prof string, args ...string) (string, error) {
	cmd := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), bin, prof)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		return "", fmt.Errorf("go tool pprof %v: %v %s", args, err, msg)
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n"), nil
}
