package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// kill9Env, set, makes TestCommitsSurviveKill9 the child that writes.
const kill9Env = "STORE_KILL9_DSN"

// A commit that returned is on disk: a child process appends numbered audit
// records and prints each number once its commit has returned; it is
// killed with SIGKILL mid-stream, and every number it printed must be in
// the database.
func TestCommitsSurviveKill9(t *testing.T) {
	if dsn := os.Getenv(kill9Env); dsn != "" {
		kill9Child(dsn)
		return
	}
	forEachDB(t, func(t *testing.T, s *Store, c *clock) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCommitsSurviveKill9$", "-test.count=1")
		cmd.Env = append(os.Environ(), kill9Env+"="+s.dsn)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.StdoutPipe()
		check(t, err)
		cmd.Stderr = os.Stderr
		check(t, cmd.Start())
		printed := map[int]bool{}
		lines := bufio.NewScanner(out)
		killed := false
		deadline := time.Now().Add(60 * time.Second)
		for lines.Scan() {
			n, err := strconv.Atoi(lines.Text())
			if err != nil {
				continue // the test framework's own lines
			}
			printed[n] = true
			// Kill it while it writes, after enough commits to matter.
			if !killed && (len(printed) >= 300 || time.Now().After(deadline)) {
				cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("the child ended by itself (%v) after %d commits", err, len(printed))
		}
		var st syscall.WaitStatus
		if ee, ok := err.(*exec.ExitError); ok {
			st = ee.Sys().(syscall.WaitStatus)
		}
		if !st.Signaled() || st.Signal() != syscall.SIGKILL {
			t.Fatalf("child: %v, want killed by SIGKILL", err)
		}
		s.Close()
		s2 := openTest(t, s.dsn, c)
		have := map[int]bool{}
		events := must[[]Event](t)(s2.Audit(ctx, AuditFilter{Kind: "kill9", Limit: 1 << 20}))
		for _, e := range events {
			have[e.Port] = true
		}
		for n := range printed {
			if !have[n] {
				t.Errorf("record %d was committed and printed, but is not in the database", n)
			}
		}
		t.Logf("%d commits printed before SIGKILL, %d in the database", len(printed), len(have))
	})
}

func kill9Child(dsn string) {
	s, err := Open(ctx, dsn, Options{Password: testPassword})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	for i := 1; i <= 1_000_000; i++ { // bounded: the parent kills it long before
		if err := s.Append(ctx, Event{Kind: "kill9", Port: i, Detail: "commit " + strconv.Itoa(i)}); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "%d\n", i) // os.Stdout is unbuffered: one write(2) after the commit
	}
	os.Exit(4)
}
