package panel

import "bytes"

func renderPanel(t *text) []byte {
	var b bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&b, "panel.html", t); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func renderRefused(t *text, msg string) []byte {
	var b bytes.Buffer
	if err := pageTemplate.ExecuteTemplate(&b, "refused.html", struct {
		T   *text
		Msg string
	}{t, msg}); err != nil {
		panic(err)
	}
	return b.Bytes()
}
