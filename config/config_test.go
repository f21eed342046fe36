package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name  string            `toml:"name"`
	Port  int               `toml:"port"`
	Ports map[string]string `toml:"ports"`
	Hub   []struct {
		Name string `toml:"name"`
	} `toml:"hub"`
}

func (s *sample) Validate() error {
	if s.Port < 0 || s.Port > 65535 {
		return Errorf("port", "%d is not a port", s.Port)
	}
	for i, h := range s.Hub {
		if h.Name == "" {
			return Errorf(fmt.Sprintf("hub[%d].name", i), "missing")
		}
	}
	for k := range s.Ports {
		if k == "bad" {
			return Errorf("ports."+k, "not allowed")
		}
	}
	if s.Name == "" {
		s.Name = "default"
	}
	return nil
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, want string // want: substring of the error, "" = success
	}{
		{"ok", "name = \"x\"\nport = 80\n", ""},
		{"default filled", "port = 80\n", ""},
		{"unknown key", "name = \"x\"\nnmae = \"y\"\n", `x.toml:2: unknown key "nmae"`},
		{"unknown key in table", "[ports]\na = \"b\"\n[other]\nq = 1\n", `x.toml:3: unknown key "other"`},
		{"unknown key in array table", "[[hub]]\nname = \"a\"\n[[hub]]\nnam = \"b\"\n", `x.toml:4: unknown key "hub.nam"`},
		{"wrong type", "name = \"x\"\nport = \"eighty\"\n", "x.toml:2: port:"},
		{"syntax", "name = \n", "x.toml:1:"},
		{"syntax at a line's end", "name = \"x\"\n\n[ports\nq = 1\n", "x.toml:3:"},
		{"syntax in a later line", "# 1\n# 2\nname = \"x\"\nport = 8000x\n", "x.toml:4:"},
		{"bad value", "name = \"x\"\n\nport = 70000\n", "x.toml:3: port: 70000 is not a port"},
		{"bad value in second array table", "[[hub]]\nname = \"a\"\n[[hub]]\nname = \"\"\n", "x.toml:4: hub[1].name: missing"},
		{"bad nested value", "[ports]\n\"bad\" = \"1\"\n", "x.toml:2: ports.bad: not allowed"},
	}
	for _, tt := range tests {
		var s sample
		err := Parse("x.toml", []byte(tt.in), &s)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
		if tt.name == "default filled" && s.Name != "default" {
			t.Errorf("Validate default not applied: %q", s.Name)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	err := Load(filepath.Join(t.TempDir(), "nope.toml"), &sample{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		in, want, err string
	}{
		{"", "2m0s", ""},
		{"45s", "45s", ""},
		{"30m", "30m0s", ""},
		{"31m", "", `t.d: "31m": want a duration from "5s" to "30m"`},
		{"1s", "", `t.d: "1s": want a duration from "5s" to "30m"`},
		{"soon", "", `t.d: "soon": want a duration from "5s" to "30m"`},
	} {
		d, err := Duration("t.d", tt.in, 2*time.Minute, 5*time.Second, 30*time.Minute)
		if got := fmt.Sprint(err); tt.err != "" && got != tt.err || tt.err == "" && (err != nil || d.String() != tt.want) {
			t.Errorf("Duration(%q) = %v, %v; want %s%s", tt.in, d, err, tt.want, tt.err)
		}
	}
}
