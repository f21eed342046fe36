package panel

import (
	"encoding/json"
	"strings"

	"github.com/hubtunnel/hubtunnel/internal/htmlesc"
)

// The pages are drawn by plain Go, not html/template (see package
// htmlesc); testdata holds the pages html/template drew, and
// TestPageGolden the bytes to them.

func escape(s string) string { return htmlesc.String(s) }

// writeScriptJSON writes v as JSON for a <script> element: json.Marshal
// escapes <, > and & (so no "</script>" ends it early) and U+2028/9.
func writeScriptJSON(b *strings.Builder, v any) {
	j, err := json.Marshal(v)
	if err != nil {
		b.WriteString(" null ")
		return
	}
	b.Write(j)
}

// writeHead writes both pages' start, up to their style sheet.
func writeHead(b *strings.Builder, t *text) {
	b.WriteString(`<!DOCTYPE html>
<html lang="`)
	b.WriteString(escape(t.Lang))
	b.WriteString(`">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`)
	b.WriteString(escape(t.Title))
	b.WriteString(`</title>
<link rel="stylesheet" href="assets/panel.css">
`)
}

// renderPanel is the settings page in t's language; its script reads t
// from the JSON in #text.
func renderPanel(t *text) []byte {
	var b strings.Builder
	b.Grow(10 << 10)
	writeHead(&b, t)
	b.WriteString(`<script type="application/json" id="text">`)
	writeScriptJSON(&b, t)
	b.WriteString(`</script>
<script src="assets/panel.js" defer></script>
</head>
<body>
<header>
<h1>`)
	b.WriteString(escape(t.Title))
	b.WriteString(`</h1>
<p>`)
	b.WriteString(escape(t.Intro))
	b.WriteString(`</p>
<nav><a href="#status">`)
	b.WriteString(escape(t.StatusTitle))
	b.WriteString(`</a> <a href="#updates">`)
	b.WriteString(escape(t.UpdatesTitle))
	b.WriteString(`</a> <a href="#settings">`)
	b.WriteString(escape(t.SettingsTitle))
	b.WriteString(`</a> <a href="#ports">`)
	b.WriteString(escape(t.PortsTitle))
	b.WriteString(`</a> <a href="#diag">`)
	b.WriteString(escape(t.DiagTitle))
	b.WriteString(`</a> <a id="stats-link" href="stats">`)
	b.WriteString(escape(t.StatsLink))
	b.WriteString(`</a></nav>
<p id="banner" class="banner" hidden></p>
</header>
<main>

<section id="enroll" hidden>
<h2>`)
	b.WriteString(escape(t.EnrollTitle))
	b.WriteString(`</h2>
<p>`)
	b.WriteString(escape(t.EnrollHelp))
	b.WriteString(`</p>
<form id="enroll-form">
<label for="code">`)
	b.WriteString(escape(t.EnrollCode))
	b.WriteString(`</label>
<input id="code" name="code" autocomplete="off" spellcheck="false" size="40">
<button id="enroll-button" type="submit">`)
	b.WriteString(escape(t.EnrollButton))
	b.WriteString(`</button>
<p class="error" id="code-error" role="alert"></p>
<p class="note" id="enroll-note"></p>
</form>
</section>

<section id="status">
<h2>`)
	b.WriteString(escape(t.StatusTitle))
	b.WriteString(`</h2>
<dl>
<dt>`)
	b.WriteString(escape(t.State))
	b.WriteString(`</dt><dd id="st-state"></dd>
<dt>`)
	b.WriteString(escape(t.HubName))
	b.WriteString(`</dt><dd id="st-name"></dd>
<dt>`)
	b.WriteString(escape(t.URL))
	b.WriteString(`</dt><dd id="st-url"></dd>
<dt>`)
	b.WriteString(escape(t.Relay))
	b.WriteString(`</dt><dd id="st-relay"></dd>
<dt>`)
	b.WriteString(escape(t.ConnectedSince))
	b.WriteString(`</dt><dd id="st-since"></dd>
<dt>`)
	b.WriteString(escape(t.LastHandshake))
	b.WriteString(`</dt><dd id="st-handshake"></dd>
<dt>`)
	b.WriteString(escape(t.LastError))
	b.WriteString(`</dt><dd id="st-error"></dd>
<dt>`)
	b.WriteString(escape(t.Transport))
	b.WriteString(`</dt><dd id="st-transport"></dd>
<dt>`)
	b.WriteString(escape(t.DNSSource))
	b.WriteString(`</dt><dd id="st-dns"></dd>
<dt>`)
	b.WriteString(escape(t.AgentVersion))
	b.WriteString(`</dt><dd id="st-version"></dd>
<dt>`)
	b.WriteString(escape(t.Hub))
	b.WriteString(`</dt><dd id="st-hub"></dd>
<dt id="st-restarts-label" hidden>`)
	b.WriteString(escape(t.SupervisorRestarts))
	b.WriteString(`</dt><dd id="st-restarts" hidden></dd>
</dl>
</section>

<section id="service">
<h2>`)
	b.WriteString(escape(t.ServiceTitle))
	b.WriteString(`</h2>
<label class="switch"><input type="checkbox" id="enabled"> `)
	b.WriteString(escape(t.ServiceOn))
	b.WriteString(`</label>
<p class="help">`)
	b.WriteString(escape(t.ServiceHelp))
	b.WriteString(`</p>
<p class="error" id="enabled-error" role="alert"></p>
<button id="restart" type="button">`)
	b.WriteString(escape(t.Restart))
	b.WriteString(`</button>
<p class="note" id="service-note"></p>
</section>

<section id="updates">
<h2>`)
	b.WriteString(escape(t.UpdatesTitle))
	b.WriteString(`</h2>
<label class="switch"><input type="checkbox" id="auto_update"> `)
	b.WriteString(escape(t.AutoUpdate))
	b.WriteString(`</label>
<p class="error" id="auto_update-error" role="alert"></p>
<p><label for="update_window">`)
	b.WriteString(escape(t.UpdateWindow))
	b.WriteString(`</label>
<input id="update_window" size="13"> <button id="window-save" type="button">`)
	b.WriteString(escape(t.Save))
	b.WriteString(`</button>
<span class="help">`)
	b.WriteString(escape(t.UpdateWindowHelp))
	b.WriteString(`</span></p>
<p class="error" id="update_window-error" role="alert"></p>
<dl>
<dt>`)
	b.WriteString(escape(t.Latest))
	b.WriteString(`</dt><dd id="up-latest"></dd>
<dt>`)
	b.WriteString(escape(t.LastCheck))
	b.WriteString(`</dt><dd id="up-checked"></dd>
<dt>`)
	b.WriteString(escape(t.LastResult))
	b.WriteString(`</dt><dd id="up-result"></dd>
</dl>
<button id="check" type="button">`)
	b.WriteString(escape(t.CheckNow))
	b.WriteString(`</button>
<button id="install" type="button" hidden>`)
	b.WriteString(escape(t.Install))
	b.WriteString(`</button>
<p class="note" id="update-note" role="status"></p>
</section>

<section id="settings">
<h2>`)
	b.WriteString(escape(t.SettingsTitle))
	b.WriteString(`</h2>
<p class="help">`)
	b.WriteString(escape(t.SettingsHelp))
	b.WriteString(`</p>
<form id="settings-form">
<p><label for="proxy">`)
	b.WriteString(escape(t.Proxy))
	b.WriteString(`</label><input id="proxy" size="40" spellcheck="false"> <span class="help">`)
	b.WriteString(escape(t.ProxyHelp))
	b.WriteString(`</span></p>
<p class="error" id="proxy-error" role="alert"></p>
<p><label for="allowed_cidrs">`)
	b.WriteString(escape(t.AllowedCIDRs))
	b.WriteString(`</label><textarea id="allowed_cidrs" rows="3" cols="40" spellcheck="false"></textarea> <span class="help">`)
	b.WriteString(escape(t.AllowedHelp))
	b.WriteString(`</span></p>
<p class="error" id="allowed_cidrs-error" role="alert"></p>
<p><label for="dns_fallback">`)
	b.WriteString(escape(t.DNSFallback))
	b.WriteString(`</label><textarea id="dns_fallback" rows="3" cols="40" spellcheck="false"></textarea> <span class="help">`)
	b.WriteString(escape(t.DNSFallbackHelp))
	b.WriteString(`</span></p>
<p class="error" id="dns_fallback-error" role="alert"></p>
<fieldset><legend>`)
	b.WriteString(escape(t.OptionalPorts))
	b.WriteString(`</legend>
<label><input type="checkbox" class="optport" value="90"> 90</label>
<label><input type="checkbox" class="optport" value="8001"> 8001</label>
<label><input type="checkbox" class="optport" value="8002"> 8002</label>
<span class="help">`)
	b.WriteString(escape(t.OptionalPortsHelp))
	b.WriteString(`</span></fieldset>
<p class="error" id="optional_ports-error" role="alert"></p>
<button id="save" type="submit">`)
	b.WriteString(escape(t.Save))
	b.WriteString(`</button>
<p class="note" id="settings-note" role="status"></p>
</form>
</section>

<section id="ports">
<h2>`)
	b.WriteString(escape(t.PortsTitle))
	b.WriteString(`</h2>
<p class="help">`)
	b.WriteString(escape(t.PortsHelp))
	b.WriteString(`</p>
<table>
<thead><tr><th>`)
	b.WriteString(escape(t.PortCol))
	b.WriteString(`</th><th>`)
	b.WriteString(escape(t.ServiceCol))
	b.WriteString(`</th><th>`)
	b.WriteString(escape(t.HubCol))
	b.WriteString(`</th><th>`)
	b.WriteString(escape(t.URLCol))
	b.WriteString(`</th></tr></thead>
<tbody id="port-rows"></tbody>
</table>
</section>

<section id="diag">
<h2>`)
	b.WriteString(escape(t.DiagTitle))
	b.WriteString(`</h2>
<button id="diag-dns" type="button">`)
	b.WriteString(escape(t.DiagDNS))
	b.WriteString(`</button>
<button id="diag-connect" type="button">`)
	b.WriteString(escape(t.DiagConnect))
	b.WriteString(`</button>
<pre id="diag-out"></pre>
<h3>`)
	b.WriteString(escape(t.LogsTitle))
	b.WriteString(`</h3>
<button id="logs-refresh" type="button">`)
	b.WriteString(escape(t.LogsRefresh))
	b.WriteString(`</button>
<pre id="logs"></pre>
</section>
</main>
</body>
</html>
`)
	return []byte(b.String())
}

// renderRefused is the page that says why the panel refused: msg.
func renderRefused(t *text, msg string) []byte {
	var b strings.Builder
	writeHead(&b, t)
	b.WriteString(`</head>
<body>
<main>
<h1>`)
	b.WriteString(escape(t.Title))
	b.WriteString(`</h1>
<p class="refused" id="refused">`)
	b.WriteString(escape(msg))
	b.WriteString(`</p>
</main>
</body>
</html>
`)
	return []byte(b.String())
}
