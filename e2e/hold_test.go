package e2e

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
)

// TestBenchHold runs `hubbench hold` as a person comparing builds would:
// the request it says to make reaches the hub's service through the relay
// and the agent it started, and Ctrl-C (SIGINT) stops both.
func TestBenchHold(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	hb := filepath.Join(tmp, "hubbench")
	build := exec.Command("go", "build", "-o", hb, "./bench/cmd/hubbench")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build hubbench: %v\n%s", err, out)
	}
	for _, transport := range []string{"tcp", "udp"} {
		env := filepath.Join(tmp, transport+".env")
		cmd := exec.Command(hb, "hold", "-bin", filepath.Dir(bin.hubtunnel), "-transport", transport, "-env", env, "-for", "2m")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		printed := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(out)
			printed <- string(b)
			exited <- cmd.Wait()
		}()
		poll.Until(t, time.Minute, "hubbench hold to write "+env, func() bool {
			_, err := os.Stat(env)
			return err == nil
		})
		vars := readAssignments(t, env)

		req, _ := http.NewRequest("GET", vars["SMALL"], nil)
		req.Host = strings.TrimPrefix(vars["HOST"], "Host: ")
		req.Header.Set("Authorization", strings.TrimPrefix(vars["AUTH"], "Authorization: "))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: GET $SMALL: %v", transport, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("%s: GET $SMALL through the held rig: %d %q; want 200 \"ok\"", transport, resp.StatusCode, body)
		}

		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s: hubbench hold after SIGINT: %v", transport, err)
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: hubbench hold still runs 30 s after SIGINT", transport)
		}
		if p := <-printed; !strings.Contains(p, "AGENT=") || !strings.Contains(p, "wrk ") {
			t.Errorf("%s: hold printed no assignments and commands:\n%s", transport, p)
		}
		for _, name := range []string{"AGENT", "RELAY"} {
			pid, err := strconv.Atoi(vars[name])
			if err != nil {
				t.Fatalf("%s: %s=%q", transport, name, vars[name])
			}
			poll.Until(t, 10*time.Second, name+" to be gone after hold ended", func() bool {
				return syscall.Kill(pid, 0) == syscall.ESRCH
			})
		}
	}
}

// readAssignments reads NAME=value lines, a value perhaps in single quotes.
func readAssignments(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q is no assignment", path, line)
		}
		vars[k] = strings.Trim(v, "'")
	}
	return vars
}
