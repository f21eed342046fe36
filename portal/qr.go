package portal

import (
	"fmt"
	"html/template"
	"strings"

	qr "github.com/piglig/go-qr"
)

// qrQuiet is the blank margin around a QR code, in modules, that scanners
// need (the standard's four).
const qrQuiet = 4

// qrSVG draws text as a QR code in an inline SVG with the element id id:
// one path of the dark modules, each row's runs merged, drawn in module
// units and scaled by the browser. Inline, it needs no image source in the
// Content-Security-Policy and nothing leaves the page.
func qrSVG(id, text string) (template.HTML, error) {
	code, err := qr.EncodeText(text, qr.Medium)
	if err != nil {
		return "", fmt.Errorf("portal: QR code: %w", err)
	}
	n := code.Size()
	var d strings.Builder
	for y := 0; y < n; y++ {
		for x := 0; x < n; {
			if !code.Module(x, y) {
				x++
				continue
			}
			run := 1
			for x+run < n && code.Module(x+run, y) {
				run++
			}
			fmt.Fprintf(&d, "M%d %dh%dv1h-%dz", x+qrQuiet, y+qrQuiet, run, run)
			x += run
		}
	}
	size := n + 2*qrQuiet
	return template.HTML(fmt.Sprintf(`<svg id="%s" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" height="%d" shape-rendering="crispEdges" role="img">`+
		`<rect width="%d" height="%d" fill="#fff"/><path fill="#000" d="%s"/></svg>`,
		id, size, size, size*5, size*5, size, size, d.String())), nil
}
