package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadSupervisor(t *testing.T) {
	dir := t.TempDir()
	if s := readSupervisor(dir); s != nil {
		t.Errorf("no file: %+v, want nil", s)
	}
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, SupervisorStateFile), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("restarts=4\nlast_exit=SIGKILL\nlast_crash=1700000000\ngiven_up=1\n")
	s := readSupervisor(dir)
	if s == nil || s.Restarts != 4 || s.LastExit != "SIGKILL" || !s.LastCrash.Equal(time.Unix(1700000000, 0)) || !s.GivenUp {
		t.Errorf("got %+v", s)
	}
	write("restarts=x\nlast_exit=<script>\ngarbage\n")
	if s := readSupervisor(dir); s != nil {
		t.Errorf("garbage: %+v, want nil", s)
	}
}
