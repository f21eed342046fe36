package htmlesc

import (
	"html/template"
	"strings"
	"testing"
)

// TestAsHTMLTemplate: the same bytes as html/template writes for a value
// in text and in a quoted attribute.
func TestAsHTMLTemplate(t *testing.T) {
	tmpl := template.Must(template.New("").Parse(`<p title="{{.}}">{{.}}</p>`))
	for _, s := range []string{"", "plain", `<a href="x">&'+</a>`, "nul\x00", "</script>", "{{.}}", "ä\u2028"} {
		var want strings.Builder
		if err := tmpl.Execute(&want, s); err != nil {
			t.Fatal(err)
		}
		var got strings.Builder
		got.WriteString(`<p title="`)
		Write(&got, s)
		got.WriteString(`">` + String(s) + `</p>`)
		if got.String() != want.String() {
			t.Errorf("%q: %q, html/template %q", s, got.String(), want.String())
		}
	}
}
