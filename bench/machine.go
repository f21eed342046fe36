package bench

import (
	"bufio"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// Machine describes the machine the bench runs on, as "what: value" lines.
func Machine(root string) []string {
	var out []string
	add := func(k, v string) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, k+": "+v)
		}
	}
	add("CPUs (nproc)", cmdOut("", "nproc"))
	add("CPU model", cpuModel())
	add("memory", memTotal())
	add("kernel", readTrim("/proc/sys/kernel/osrelease")+" "+runtime.GOARCH)
	add("OS", osRelease())
	add("Go", cmdOut(root, "go", "version"))
	add("hubtunnel", cmdOut(root, "git", "describe", "--tags", "--always", "--dirty"))
	add("tshark", firstLine(cmdOut("", "tshark", "--version")))
	add("load average at start (1, 5, 15 min)", LoadAvg())
	return out
}

// LoadAvg is /proc/loadavg's first three fields. The machine may be shared
// with other work (builds, tests); a high load makes throughput and latency
// lower and noisier than on an idle machine.
func LoadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cmdOut(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	return procField("/proc/cpuinfo", "model name")
}

func memTotal() string {
	return procField("/proc/meminfo", "MemTotal")
}

func osRelease() string {
	v := procField("/etc/os-release", "PRETTY_NAME")
	return strings.Trim(v, `"`)
}

// procField returns the value of the first "key: value" (or key=value) line.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, sep := range []string{":", "="} {
			if k, v, ok := strings.Cut(line, sep); ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}
