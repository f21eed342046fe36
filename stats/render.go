package stats

import "strings"

func renderPage(p page) string {
	var b strings.Builder
	if err := pageTmpl.Execute(&b, p); err != nil {
		panic(err)
	}
	return b.String()
}
