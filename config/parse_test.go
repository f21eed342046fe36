package config

import (
	"regexp"
	"testing"
)

// The hand-written parsers agree with the regular expressions they
// replaced (regexp's matcher cost the agent 45 KB).
func TestTypeErrorAndIndexesAsTheRegexpsDid(t *testing.T) {
	typeErr := regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)
	for _, s := range []string{
		`toml: line 3 (last key "relay.port"): incompatible types: TOML value has type string; destination has type integer`,
		`toml: line 12 (last key ""): x`,
		`toml: line 3 (last key "a"b"): x`,
		`toml: line 3 (last key "a"): two` + "\n" + `lines`,
		`toml: line  (last key "a"): x`,
		`toml: line 3 (last key "a")`,
		`toml: line 3x (last key "a"): x`,
		`toml: line 3 (last key "a"): `,
		`toml: line 3 (last key "a"): "): y`,
		`toml: incompatible types`,
		`xtoml: line 3 (last key "a"): x`,
		``,
	} {
		line, key, msg, ok := typeError(s)
		m := typeErr.FindStringSubmatch(s)
		if ok != (m != nil) || ok && (line != m[1] || key != m[2] || msg != m[3]) {
			t.Errorf("typeError(%q) = %q %q %q %v, regexp %q", s, line, key, msg, ok, m)
		}
	}
	arrayIndex := regexp.MustCompile(`\[\d+\]`)
	for _, k := range []string{"hub[1].public_key", "a[0][12].b", "a[].b", "a[x]", "[3]", "a[3", "a]3[", "a[[1]]", "plain", ""} {
		if got, want := withoutIndexes(k), arrayIndex.ReplaceAllString(k, ""); got != want {
			t.Errorf("withoutIndexes(%q) = %q, want %q", k, got, want)
		}
	}
}
