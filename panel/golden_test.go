package panel

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden pages in testdata")

// hostile is a string with every character HTML and JSON escaping care about.
const hostile = "<a href='x' title=\"y\">&amp; +1 \x00 ü \u2028 </script> <!-- {{.}}"

// hostileText is english with hostile appended to every string.
func hostileText() *text {
	t := english
	v := reflect.ValueOf(&t).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(f.String() + hostile)
		}
	}
	return &t
}

// TestPageGolden holds the pages to what html/template drew before they
// became plain Go: the same bytes for the same text.
func TestPageGolden(t *testing.T) {
	for name, got := range map[string][]byte{
		"panel-en":        renderPanel(&english),
		"panel-de":        renderPanel(&german),
		"panel-hostile":   renderPanel(hostileText()),
		"refused-en":      renderRefused(&english, english.ErrNoSession),
		"refused-de":      renderRefused(&german, german.ErrRega),
		"refused-hostile": renderRefused(hostileText(), "msg"+hostile),
	} {
		file := filepath.Join("testdata", name+".html")
		if *update {
			if err := os.WriteFile(file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: page differs from %s", name, file)
		}
	}
}
