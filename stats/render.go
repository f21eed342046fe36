package stats

import (
	"strconv"
	"strings"

	"github.com/hubtunnel/hubtunnel/internal/htmlesc"
)

// The page is drawn by plain Go, not html/template (see package
// htmlesc); testdata holds the pages html/template drew, and
// TestPageGolden holds this to their bytes.

// pageStyle is the page's style sheet: inline, as the page's CSP allows
// nothing from elsewhere.
const pageStyle = `<style>
body { font-family: Arial, Helvetica, sans-serif; font-size: 14px; color: #222; background: #f5f5f5; margin: 0; }
main { max-width: 760px; margin: 0 auto; padding: 12px; }
h1 { font-size: 18px; margin: 8px 0 4px; }
h2 { font-size: 15px; background: #e1e6ea; border: 1px solid #c8d0d6; margin: 18px 0 0; padding: 5px 8px; }
section { background: #fff; border: 1px solid #c8d0d6; border-top: 0; padding: 8px; }
p.intro { color: #555; margin: 4px 0 8px; }
p.warn { background: #fff3cd; border: 1px solid #e0c060; padding: 6px 8px; }
.totals { display: flex; flex-wrap: wrap; gap: 8px; }
.totals div { flex: 1 1 200px; background: #fff; border: 1px solid #c8d0d6; padding: 8px; }
.totals b { font-size: 20px; display: block; }
.totals small { color: #555; }
svg { width: 100%; height: auto; display: block; }
svg text { font-size: 11px; fill: #555; }
rect.user { fill: #2f6fa8; }
rect.overhead { fill: #e59a2f; }
rect.used { fill: #2f6fa8; }
rect.projected { fill: #bcd3e8; }
rect.planbg { fill: #eef1f3; }
line.plan-line { stroke: #c0392b; stroke-width: 2; }
line.axis { stroke: #999; stroke-width: 1; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e1e6ea; vertical-align: top; }
td.num, th.num { text-align: right; white-space: nowrap; }
.over { color: #c0392b; font-weight: bold; }
</style>
`

// pageWriter writes the page: s for markup, e for a value, escaped.
// Neither is inlined: inlined, the page's writes took 25 KB of the agent's
// binary.
type pageWriter struct{ strings.Builder }

//go:noinline
func (w *pageWriter) s(parts ...string) {
	for _, p := range parts {
		w.WriteString(p)
	}
}

//go:noinline
func (w *pageWriter) e(v string) { htmlesc.Write(&w.Builder, v) }

// n writes a number as text/template printed it (fmt's %v).
func (w *pageWriter) n(v float64) { w.e(strconv.FormatFloat(v, 'g', -1, 64)) }

// renderPage draws p.
func renderPage(p page) string {
	var w pageWriter
	w.Grow(32 << 10)
	t := p.T
	w.s("<!DOCTYPE html>\n<html lang=\"")
	w.e(p.Lang)
	w.s("\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>")
	w.e(t["title"])
	w.s("</title>\n", pageStyle, "</head>\n<body>\n<main>\n<h1>")
	w.e(t["heading"])
	w.s("</h1>\n<p class=\"intro\">")
	w.e(t["intro"])
	w.s("</p>\n")
	if !p.ClockSet {
		w.s(`<p class="warn" id="clock">`)
		w.e(t["clock"])
		w.s("</p>")
	}
	w.s("\n<div class=\"totals\">\n")
	w.counts("today", t["today"], "", t["user"], p.Today.User, t["overhead"], p.Today.Overhead, p.Today.All)
	w.counts("month", t["month"], "", t["user"], p.Month.User, t["overhead"], p.Month.Overhead, p.Month.All)
	w.counts("total", t["total"], p.Since, t["in"], p.Total.In, t["out"], p.Total.Out, p.Total.All)
	w.s("</div>\n\n<h2>")
	w.e(t["plan"])
	w.s("</h2>\n<section id=\"plan\">\n")
	if pl := p.Plan; pl != nil {
		w.s(`
 <p><b id="plan-of">`)
		w.e(pl.Of)
		w.s("</b> · ")
		w.e(pl.Period)
		w.s(`</p>
 <svg viewBox="0 0 300 34" role="img" aria-label="`)
		w.e(pl.Of)
		w.s(`">
  <rect class="planbg" x="0" y="6" width="300" height="20"/>
  <rect class="projected" x="0" y="6" width="`)
		w.n(pl.ProjW)
		w.s(`" height="20"><title>`)
		w.e(t["projected"])
		w.s(`</title></rect>
  <rect class="used" x="0" y="6" width="`)
		w.n(pl.UsedW)
		w.s(`" height="20"><title>`)
		w.e(t["used"])
		w.s(`</title></rect>
  <line class="plan-line" x1="`)
		w.n(pl.LineX)
		w.s(`" x2="`)
		w.n(pl.LineX)
		w.s(`" y1="1" y2="31"><title>`)
		w.e(t["planLine"])
		w.s(`</title></line>
 </svg>
 <p id="projection" `)
		if pl.Over {
			w.s(`class="over"`)
		}
		w.s(">")
		w.e(pl.Projection)
		w.s("</p>\n")
	} else {
		w.s("\n <p id=\"no-plan\">")
		w.e(t["noPlan"])
		w.s("</p>\n")
	}
	w.s("\n</section>\n\n<p class=\"legend\"><span><i style=\"background:#2f6fa8\"></i>")
	w.e(t["user"])
	w.s("</span><span><i style=\"background:#e59a2f\"></i>")
	w.e(t["overhead"])
	w.s("</span></p>\n\n\n\n<h2>")
	w.e(t["hours"])
	w.s("</h2>\n<section id=\"hours\">")
	w.chart(p.Hours)
	w.s("</section>\n\n<h2>")
	w.e(t["days"])
	w.s("</h2>\n<section id=\"days\">")
	w.chart(p.Days)
	w.s("</section>\n\n<h2>")
	w.e(t["months"])
	w.s("</h2>\n<section id=\"months\">\n<table>\n<tr><th></th><th class=\"num\">")
	w.e(t["user"])
	w.s("</th><th class=\"num\">")
	w.e(t["overhead"])
	w.s("</th><th class=\"num\">Σ</th></tr>\n")
	for _, m := range p.Months {
		w.s("<tr><td>")
		w.e(m.Label)
		w.s(`</td><td class="num">`)
		w.e(m.User)
		w.s(`</td><td class="num">`)
		w.e(m.Overhead)
		w.s(`</td><td class="num">`)
		w.e(m.All)
		w.s("</td></tr>\n")
	}
	w.s("\n</table>\n</section>\n\n<h2>")
	w.e(t["events"])
	w.s("</h2>\n<section id=\"events\">\n")
	if len(p.Events) > 0 {
		w.s("\n<table>\n<tr><th>")
		w.e(t["when"])
		w.s("</th><th>")
		w.e(t["what"])
		w.s("</th><th>")
		w.e(t["why"])
		w.s("</th></tr>\n")
		for _, ev := range p.Events {
			w.s(`<tr class="event"><td class="num">`)
			w.e(ev.When)
			w.s("</td><td>")
			w.e(ev.What)
			w.s("</td><td>")
			w.e(ev.Why)
			w.s("</td></tr>\n")
		}
		w.s("\n</table>\n")
	} else {
		w.s("<p>")
		w.e(t["noEvents"])
		w.s("</p>")
	}
	w.s("\n</section>\n</main>\n</body>\n</html>\n")
	return w.String()
}

// counts writes one of the totals: a label (with since, if any), all
// bytes and two parts of them.
func (w *pageWriter) counts(id, label, since, aLabel, a, bLabel, b, all string) {
	w.s(` <div id="`, id, `">`)
	w.e(label)
	if since != "" {
		w.s(" (")
		w.e(since)
		w.s(")")
	}
	w.s("<b>")
	w.e(all)
	w.s("</b><small>")
	w.e(aLabel)
	w.s(" ")
	w.e(a)
	w.s(" · ")
	w.e(bLabel)
	w.s(" ")
	w.e(b)
	w.s("</small></div>\n")
}

// chart writes c as an SVG bar chart.
func (w *pageWriter) chart(c chart) {
	w.s("\n<svg viewBox=\"0 0 ")
	w.n(c.Width)
	w.s(" ")
	w.n(c.Height)
	w.s("\" role=\"img\">\n <line class=\"axis\" x1=\"4\" x2=\"")
	w.n(c.Width)
	w.s(`" y1="`)
	w.n(c.BaseY)
	w.s(`" y2="`)
	w.n(c.BaseY)
	w.s("\"/>\n <text x=\"")
	w.n(c.Width)
	w.s(`" y="10" text-anchor="end">`)
	w.e(c.Max)
	w.s("</text>\n ")
	for _, b := range c.Bars {
		w.s(`<g class="bar" data-key="`)
		w.e(b.Key)
		w.s(`"><title>`)
		w.e(b.Title)
		w.s(`</title><rect x="`)
		w.n(b.X)
		w.s(`" y="12" width="`)
		w.n(b.W)
		w.s(`" height="148" fill="transparent"/>`)
		if b.HasUser {
			w.s(`<rect class="user" x="`)
			w.n(b.X)
			w.s(`" y="`)
			w.n(b.UserY)
			w.s(`" width="`)
			w.n(b.W)
			w.s(`" height="`)
			w.n(b.UserH)
			w.s(`"/>`)
		}
		if b.HasOverhead {
			w.s(`<rect class="overhead" x="`)
			w.n(b.X)
			w.s(`" y="`)
			w.n(b.OverY)
			w.s(`" width="`)
			w.n(b.W)
			w.s(`" height="`)
			w.n(b.OverH)
			w.s(`"/>`)
		}
		w.s("</g>\n ")
	}
	w.s("\n ")
	for _, tk := range c.Ticks {
		w.s(`<text x="`)
		w.n(tk.X)
		w.s(`" y="176" text-anchor="middle">`)
		w.e(tk.Label)
		w.s("</text>")
	}
	w.s("\n</svg>\n")
}
