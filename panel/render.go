package panel

import (
	"encoding/json"
	"strings"

	"github.com/hubtunnel/hubtunnel/internal/htmlesc"
)

// The pages are drawn by plain Go, not html/template (see package
// htmlesc); testdata holds the pages html/template drew, and
// TestPageGolden the bytes to them.

// pageWriter writes a page: s for markup, e for a value, escaped. Neither
// is inlined: the settings page's 140 inlined writes took 30 KB of the
// agent's binary.
type pageWriter struct{ strings.Builder }

//go:noinline
func (w *pageWriter) s(markup string) { w.WriteString(markup) }

//go:noinline
func (w *pageWriter) e(v string) { htmlesc.Write(&w.Builder, v) }

// json writes v as JSON for a <script> element: json.Marshal escapes <, >
// and & (so no "</script>" ends it early) and U+2028/9.
func (w *pageWriter) json(v any) {
	j, err := json.Marshal(v)
	if err != nil {
		w.WriteString(" null ")
		return
	}
	w.Write(j)
}

// head writes both pages' start, up to their style sheet.
func (w *pageWriter) head(t *text) {
	w.s(`<!DOCTYPE html>
<html lang="`)
	w.e(t.Lang)
	w.s(`">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`)
	w.e(t.Title)
	w.s(`</title>
<link rel="stylesheet" href="assets/panel.css">
`)
}

// renderPanel is the settings page in t's language; its script reads t
// from the JSON in #text.
func renderPanel(t *text) []byte {
	var w pageWriter
	w.Grow(10 << 10)
	w.head(t)
	w.s(`<script type="application/json" id="text">`)
	w.json(t)
	w.s(`</script>
<script src="assets/panel.js" defer></script>
</head>
<body>
<header>
<h1>`)
	w.e(t.Title)
	w.s(`</h1>
<p>`)
	w.e(t.Intro)
	w.s(`</p>
<nav><a href="#status">`)
	w.e(t.StatusTitle)
	w.s(`</a> <a href="#updates">`)
	w.e(t.UpdatesTitle)
	w.s(`</a> <a href="#settings">`)
	w.e(t.SettingsTitle)
	w.s(`</a> <a href="#ports">`)
	w.e(t.PortsTitle)
	w.s(`</a> <a href="#diag">`)
	w.e(t.DiagTitle)
	w.s(`</a> <a id="stats-link" href="stats">`)
	w.e(t.StatsLink)
	w.s(`</a></nav>
<p id="banner" class="banner" hidden></p>
</header>
<main>

<section id="enroll" hidden>
<h2>`)
	w.e(t.EnrollTitle)
	w.s(`</h2>
<p>`)
	w.e(t.EnrollHelp)
	w.s(`</p>
<form id="enroll-form">
<label for="code">`)
	w.e(t.EnrollCode)
	w.s(`</label>
<input id="code" name="code" autocomplete="off" spellcheck="false" size="40">
<button id="enroll-button" type="submit">`)
	w.e(t.EnrollButton)
	w.s(`</button>
<p class="error" id="code-error" role="alert"></p>
<p class="note" id="enroll-note"></p>
</form>
</section>

<section id="status">
<h2>`)
	w.e(t.StatusTitle)
	w.s(`</h2>
<dl>
<dt>`)
	w.e(t.State)
	w.s(`</dt><dd id="st-state"></dd>
<dt>`)
	w.e(t.HubName)
	w.s(`</dt><dd id="st-name"></dd>
<dt>`)
	w.e(t.URL)
	w.s(`</dt><dd id="st-url"></dd>
<dt>`)
	w.e(t.Relay)
	w.s(`</dt><dd id="st-relay"></dd>
<dt>`)
	w.e(t.ConnectedSince)
	w.s(`</dt><dd id="st-since"></dd>
<dt>`)
	w.e(t.LastHandshake)
	w.s(`</dt><dd id="st-handshake"></dd>
<dt>`)
	w.e(t.LastError)
	w.s(`</dt><dd id="st-error"></dd>
<dt>`)
	w.e(t.Transport)
	w.s(`</dt><dd id="st-transport"></dd>
<dt>`)
	w.e(t.DNSSource)
	w.s(`</dt><dd id="st-dns"></dd>
<dt>`)
	w.e(t.AgentVersion)
	w.s(`</dt><dd id="st-version"></dd>
<dt>`)
	w.e(t.Hub)
	w.s(`</dt><dd id="st-hub"></dd>
<dt id="st-restarts-label" hidden>`)
	w.e(t.SupervisorRestarts)
	w.s(`</dt><dd id="st-restarts" hidden></dd>
</dl>
</section>

<section id="service">
<h2>`)
	w.e(t.ServiceTitle)
	w.s(`</h2>
<label class="switch"><input type="checkbox" id="enabled"> `)
	w.e(t.ServiceOn)
	w.s(`</label>
<p class="help">`)
	w.e(t.ServiceHelp)
	w.s(`</p>
<p class="error" id="enabled-error" role="alert"></p>
<button id="restart" type="button">`)
	w.e(t.Restart)
	w.s(`</button>
<p class="note" id="service-note"></p>
</section>

<section id="updates">
<h2>`)
	w.e(t.UpdatesTitle)
	w.s(`</h2>
<label class="switch"><input type="checkbox" id="auto_update"> `)
	w.e(t.AutoUpdate)
	w.s(`</label>
<p class="error" id="auto_update-error" role="alert"></p>
<p><label for="update_window">`)
	w.e(t.UpdateWindow)
	w.s(`</label>
<input id="update_window" size="13"> <button id="window-save" type="button">`)
	w.e(t.Save)
	w.s(`</button>
<span class="help">`)
	w.e(t.UpdateWindowHelp)
	w.s(`</span></p>
<p class="error" id="update_window-error" role="alert"></p>
<dl>
<dt>`)
	w.e(t.Latest)
	w.s(`</dt><dd id="up-latest"></dd>
<dt>`)
	w.e(t.LastCheck)
	w.s(`</dt><dd id="up-checked"></dd>
<dt>`)
	w.e(t.LastResult)
	w.s(`</dt><dd id="up-result"></dd>
</dl>
<button id="check" type="button">`)
	w.e(t.CheckNow)
	w.s(`</button>
<button id="install" type="button" hidden>`)
	w.e(t.Install)
	w.s(`</button>
<p class="note" id="update-note" role="status"></p>
</section>

<section id="settings">
<h2>`)
	w.e(t.SettingsTitle)
	w.s(`</h2>
<p class="help">`)
	w.e(t.SettingsHelp)
	w.s(`</p>
<form id="settings-form">
<p><label for="proxy">`)
	w.e(t.Proxy)
	w.s(`</label><input id="proxy" size="40" spellcheck="false"> <span class="help">`)
	w.e(t.ProxyHelp)
	w.s(`</span></p>
<p class="error" id="proxy-error" role="alert"></p>
<p><label for="allowed_cidrs">`)
	w.e(t.AllowedCIDRs)
	w.s(`</label><textarea id="allowed_cidrs" rows="3" cols="40" spellcheck="false"></textarea> <span class="help">`)
	w.e(t.AllowedHelp)
	w.s(`</span></p>
<p class="error" id="allowed_cidrs-error" role="alert"></p>
<p><label for="dns_fallback">`)
	w.e(t.DNSFallback)
	w.s(`</label><textarea id="dns_fallback" rows="3" cols="40" spellcheck="false"></textarea> <span class="help">`)
	w.e(t.DNSFallbackHelp)
	w.s(`</span></p>
<p class="error" id="dns_fallback-error" role="alert"></p>
<fieldset><legend>`)
	w.e(t.OptionalPorts)
	w.s(`</legend>
<label><input type="checkbox" class="optport" value="90"> 90</label>
<label><input type="checkbox" class="optport" value="8001"> 8001</label>
<label><input type="checkbox" class="optport" value="8002"> 8002</label>
<span class="help">`)
	w.e(t.OptionalPortsHelp)
	w.s(`</span></fieldset>
<p class="error" id="optional_ports-error" role="alert"></p>
<button id="save" type="submit">`)
	w.e(t.Save)
	w.s(`</button>
<p class="note" id="settings-note" role="status"></p>
</form>
</section>

<section id="ports">
<h2>`)
	w.e(t.PortsTitle)
	w.s(`</h2>
<p class="help">`)
	w.e(t.PortsHelp)
	w.s(`</p>
<table>
<thead><tr><th>`)
	w.e(t.PortCol)
	w.s(`</th><th>`)
	w.e(t.ServiceCol)
	w.s(`</th><th>`)
	w.e(t.HubCol)
	w.s(`</th><th>`)
	w.e(t.URLCol)
	w.s(`</th></tr></thead>
<tbody id="port-rows"></tbody>
</table>
</section>

<section id="diag">
<h2>`)
	w.e(t.DiagTitle)
	w.s(`</h2>
<button id="diag-dns" type="button">`)
	w.e(t.DiagDNS)
	w.s(`</button>
<button id="diag-connect" type="button">`)
	w.e(t.DiagConnect)
	w.s(`</button>
<pre id="diag-out"></pre>
<h3>`)
	w.e(t.LogsTitle)
	w.s(`</h3>
<button id="logs-refresh" type="button">`)
	w.e(t.LogsRefresh)
	w.s(`</button>
<pre id="logs"></pre>
</section>
</main>
</body>
</html>
`)
	return []byte(w.String())
}

// renderRefused is the page that says why the panel refused: msg.
func renderRefused(t *text, msg string) []byte {
	var w pageWriter
	w.head(t)
	w.s(`</head>
<body>
<main>
<h1>`)
	w.e(t.Title)
	w.s(`</h1>
<p class="refused" id="refused">`)
	w.e(msg)
	w.s(`</p>
</main>
</body>
</html>
`)
	return []byte(w.String())
}
