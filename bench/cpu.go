package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// CPUTime is the user plus system CPU time pid has used so far, all its
// threads together (utime + stime of /proc/PID/stat; children that have
// exited are not counted).
func CPUTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return time.Duration(st.utime+st.stime) * clockTick, nil
}

// TreeCPU is CPUTime summed over pid and every process below it now (sshd
// forks a process per connection, which does the work).
func TreeCPU(pid int) (time.Duration, error) {
	pids, err := Descendants(pid)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, p := range append(pids, pid) {
		t, err := CPUTime(p)
		if err != nil && p == pid {
			return 0, err
		}
		sum += t // a child that exits between the scan and here adds 0
	}
	return sum, nil
}

// Descendants are the processes below pid: its children, their children, …
func Descendants(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 && len(out) < 100000 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out, nil
}

type procStat struct {
	ppid         int
	utime, stime int64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(b))
}

// parseStat reads ppid, utime and stime from a /proc/PID/stat line. The
// command name in parentheses may hold spaces and parentheses: the fields
// start after the last ')'.
func parseStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bench: /proc stat line without a command: %.60q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("bench: /proc stat line with %d fields after the command, want ≥ 13", len(f))
	}
	var st procStat
	var err error
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc stat ppid: %w", err)
	}
	if st.utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc stat utime: %w", err)
	}
	if st.stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("bench: /proc stat stime: %w", err)
	}
	return st, nil
}
