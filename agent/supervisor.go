package agent

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hubtunnel/hubtunnel/localapi"
)

// SupervisorStateFile is where the addon's supervisor (its init script's
// "supervise") notes crash restarts, beside the config: key=value lines
// restarts, last_exit, last_crash (Unix seconds) and given_up (0 or 1).
const SupervisorStateFile = "supervisor.state"

// readSupervisor reads SupervisorStateFile in dir; nil when there is none
// (the agent was not started by the addon) or it holds nothing usable.
func readSupervisor(dir string) *localapi.SupervisorStatus {
	b, err := os.ReadFile(filepath.Join(dir, SupervisorStateFile))
	if err != nil || len(b) > 4096 {
		return nil
	}
	var s localapi.SupervisorStatus
	known := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte("="))
		if !ok {
			continue
		}
		val := string(v)
		switch string(k) {
		case "restarts":
			if n, err := strconv.Atoi(val); err == nil && n >= 0 {
				s.Restarts, known = n, true
			}
		case "last_exit":
			if len(val) <= 16 && isWord(val) {
				s.LastExit, known = val, true
			}
		case "last_crash":
			if n, err := strconv.ParseInt(val, 10, 64); err == nil && n > 0 {
				s.LastCrash, known = time.Unix(n, 0).UTC(), true
			}
		case "given_up":
			s.GivenUp, known = val == "1", known || val == "0" || val == "1"
		}
	}
	if !known {
		return nil
	}
	return &s
}

// isWord: letters and digits only (an exit code or a signal's name).
func isWord(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
