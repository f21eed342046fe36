package stats

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Handler serves the statistics page (GET …/stats) and the record as JSON
// (GET a path ending in /api/stats) in lang, "de" or "en" (anything else is
// English). The page is HTML with charts drawn as SVG on the server: no
// script, nothing from elsewhere, a few tens of KB. It checks no session:
// the settings panel mounts it behind its own check.
func Handler(rec *Recorder, lang string) http.Handler {
	if _, ok := texts[lang]; !ok {
		lang = "en"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		rep := rec.Report()
		if strings.HasSuffix(r.URL.Path, "/api/stats") {
			h.Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(rep)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'")
		h.Set("Referrer-Policy", "no-referrer")
		io.WriteString(w, renderPage(newPage(rep, lang, rec.cfg.Location)))
	})
}

// texts are every string the page shows, per language.
var texts = map[string]map[string]string{
	"de": {
		"title":        "hubtunnel – Datenverbrauch",
		"heading":      "Datenverbrauch des Tunnels",
		"intro":        "Was der Tunnel über die Internetverbindung der Zentrale übertragen hat: Nutzung (Ihre Zugriffe) und Overhead (Verschlüsselung, Verbindungshaltung, TCP/IP-Header), wie das Netz sie sieht.",
		"clock":        "Die Uhr der Zentrale ist nicht gestellt. Gezählte Daten werden zugeordnet, sobald sie stimmt.",
		"today":        "Heute",
		"month":        "Dieser Monat",
		"total":        "Seit Beginn der Zählung",
		"user":         "Nutzung",
		"overhead":     "Overhead",
		"in":           "empfangen",
		"out":          "gesendet",
		"plan":         "Datentarif",
		"planOf":       "%s %% von %s",
		"planPeriod":   "Abrechnungszeitraum %s – %s",
		"projection":   "Hochrechnung bis Periodenende: %s",
		"noPlan":       "Kein Datentarif eingestellt ([stats] plan_mb in der Konfiguration).",
		"hours":        "Letzte 48 Stunden",
		"days":         "Letzte 31 Tage",
		"months":       "Monate",
		"events":       "Verbindungsereignisse",
		"noEvents":     "Noch keine Ereignisse.",
		"when":         "Zeit",
		"what":         "Ereignis",
		"why":          "Grund",
		"start":        "Dienst gestartet",
		"connected":    "verbunden",
		"reconnected":  "wieder verbunden",
		"disconnected": "Verbindung getrennt",
		"stop":         "Dienst beendet",
		"used":         "verbraucht",
		"projected":    "hochgerechnet",
		"planLine":     "Tarifvolumen",
		"hourFmt":      "02.01. 15:04",
		"dayFmt":       "02.01.",
		"dayLongFmt":   "Mon 02.01.2006",
		"monthFmt":     "01/2006",
		"timeFmt":      "02.01.2006 15:04:05",
		"dateFmt":      "02.01.2006",
	},
	"en": {
		"title":        "hubtunnel – data usage",
		"heading":      "Data used by the tunnel",
		"intro":        "What the tunnel moved over the hub's internet connection: usage (your access) and overhead (encryption, keeping the connection alive, TCP/IP headers), as the network sees it.",
		"clock":        "The hub's clock is not set. What is counted goes into the charts once it is.",
		"today":        "Today",
		"month":        "This month",
		"total":        "Since counting began",
		"user":         "Usage",
		"overhead":     "Overhead",
		"in":           "received",
		"out":          "sent",
		"plan":         "Data plan",
		"planOf":       "%s %% of %s",
		"planPeriod":   "Billing period %s – %s",
		"projection":   "Projected to the end of the period: %s",
		"noPlan":       "No data plan set ([stats] plan_mb in the configuration).",
		"hours":        "Last 48 hours",
		"days":         "Last 31 days",
		"months":       "Months",
		"events":       "Connection events",
		"noEvents":     "No events yet.",
		"when":         "Time",
		"what":         "Event",
		"why":          "Reason",
		"start":        "service started",
		"connected":    "connected",
		"reconnected":  "connected again",
		"disconnected": "disconnected",
		"stop":         "service stopped",
		"used":         "used",
		"projected":    "projected",
		"planLine":     "plan volume",
		"hourFmt":      "Jan 2 15:04",
		"dayFmt":       "Jan 2",
		"dayLongFmt":   "Mon Jan 2 2006",
		"monthFmt":     "Jan 2006",
		"timeFmt":      "2006-01-02 15:04:05",
		"dateFmt":      "2006-01-02",
	},
}

// Human is n bytes in KB, MB or GB (powers of 1000, as mobile plans
// count), with a decimal comma in German.
func Human(n uint64, lang string) string {
	v, unit := float64(n), "B"
	for _, u := range []string{"KB", "MB", "GB", "TB"} {
		if v < 1000 {
			break
		}
		v, unit = v/1000, u
	}
	var s string
	switch {
	case unit == "B":
		s = strconv.FormatUint(n, 10)
	case v < 10:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case v < 100:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	default:
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	if lang == "de" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s + " " + unit
}

// page is what renderPage draws.
type page struct {
	Lang     string
	T        map[string]string
	ClockSet bool
	Today    countsView
	Month    countsView
	Total    countsView
	Since    string
	Plan     *planView
	Hours    chart
	Days     chart
	Months   []monthRow
	Events   []eventRow
}

type countsView struct {
	All, User, Overhead, In, Out string
}

type planView struct {
	Of, Period, Projection string
	UsedW, ProjW, LineX    float64 // in the bar's 0–300 width
	Over                   bool
}

// chart is a bar chart of buckets, user traffic stacked under overhead.
type chart struct {
	Width, Height float64
	Bars          []bar
	Ticks         []tick // x labels
	Max           string // the y axis' top
	BaseY         float64
}

type bar struct {
	Key                  string
	X, W                 float64
	UserY, UserH         float64
	OverY, OverH         float64
	Title                string
	HasUser, HasOverhead bool
}

type tick struct {
	X     float64
	Label string
}

type monthRow struct {
	Label, User, Overhead, All string
}

type eventRow struct {
	When, What, Why string
}

// Chart geometry, in SVG units (the SVG scales to the page's width).
const (
	chartW    = 600.0
	chartH    = 180.0
	chartTop  = 12.0
	chartBase = 160.0
	chartLeft = 4.0
)

func newPage(rep Report, lang string, loc *time.Location) page {
	t := texts[lang]
	p := page{Lang: lang, T: t, ClockSet: rep.ClockSet}
	p.Today, p.Month, p.Total = view(rep.Today, lang), view(rep.Month, lang), view(rep.Total, lang)
	if !rep.Since.IsZero() {
		p.Since = rep.Since.In(loc).Format(t["dateFmt"])
	}
	if pl := rep.Plan; pl != nil {
		scale := float64(max(pl.Bytes, pl.Projected, pl.Used)) * 1.1
		pv := &planView{
			Of:         fmt.Sprintf(t["planOf"], percent(pl.Percent, lang), Human(pl.Bytes, lang)),
			Period:     fmt.Sprintf(t["planPeriod"], dateLabel(pl.Start, t["dateFmt"]), dateLabel(pl.End, t["dateFmt"])),
			Projection: fmt.Sprintf(t["projection"], Human(pl.Projected, lang)),
			UsedW:      round1(300 * float64(pl.Used) / scale),
			ProjW:      round1(300 * float64(pl.Projected) / scale),
			LineX:      round1(300 * float64(pl.Bytes) / scale),
			Over:       pl.Projected > pl.Bytes,
		}
		p.Plan = pv
	}
	p.Hours = newChart(rep.Hours, lang, func(b Bucket) (string, string, bool) {
		st, err := time.Parse(time.RFC3339, b.Key)
		if err != nil {
			return b.Key, "", false
		}
		lt := st.In(loc)
		return lt.Format(t["hourFmt"]), lt.Format("15:00"), lt.Hour()%6 == 0
	})
	p.Days = newChart(rep.Days, lang, func(b Bucket) (string, string, bool) {
		d, err := time.ParseInLocation(dayLayout, b.Key, loc)
		if err != nil {
			return b.Key, "", false
		}
		return d.Format(t["dayLongFmt"]), d.Format(t["dayFmt"]), d.Day()%5 == 1
	})
	for _, b := range slicesBackward(rep.Months) {
		m, err := time.Parse(monthLayout, b.Key)
		label := b.Key
		if err == nil {
			label = m.Format(t["monthFmt"])
		}
		p.Months = append(p.Months, monthRow{Label: label, User: Human(b.User(), lang), Overhead: Human(b.Overhead(), lang), All: Human(b.Total(), lang)})
	}
	for _, e := range rep.Events {
		when := "—"
		if plausible(e.Time) {
			when = e.Time.In(loc).Format(t["timeFmt"])
		}
		what := t[e.Kind]
		if what == "" {
			what = e.Kind
		}
		p.Events = append(p.Events, eventRow{When: when, What: what, Why: e.Why})
	}
	return p
}

func slicesBackward(bs []Bucket) []Bucket {
	out := make([]Bucket, 0, len(bs))
	for i := len(bs) - 1; i >= 0; i-- {
		out = append(out, bs[i])
	}
	return out
}

func view(c Counts, lang string) countsView {
	return countsView{
		All:      Human(c.Total(), lang),
		User:     Human(c.User(), lang),
		Overhead: Human(c.Overhead(), lang),
		In:       Human(c.UserIn+c.OverheadIn, lang),
		Out:      Human(c.UserOut+c.OverheadOut, lang),
	}
}

func percent(v float64, lang string) string {
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if v >= 10 {
		s = strconv.FormatFloat(v, 'f', 0, 64)
	}
	if lang == "de" {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

func dateLabel(key, layout string) string {
	d, err := time.Parse(dayLayout, key)
	if err != nil {
		return key
	}
	return d.Format(layout)
}

// newChart lays out bs as bars; label gives a bar's title, its x label
// and whether that label is shown.
func newChart(bs []Bucket, lang string, label func(Bucket) (title, short string, show bool)) chart {
	c := chart{Width: chartW, Height: chartH, BaseY: chartBase}
	var top uint64
	for _, b := range bs {
		top = max(top, b.Total())
	}
	scale := niceMax(top)
	c.Max = Human(scale, lang)
	if len(bs) == 0 {
		return c
	}
	slot := (chartW - chartLeft) / float64(len(bs))
	t := texts[lang]
	for i, b := range bs {
		title, short, show := label(b)
		x := chartLeft + float64(i)*slot
		br := bar{Key: b.Key, X: round1(x + slot*0.1), W: round1(slot * 0.8)}
		uh := height(b.User(), scale)
		oh := height(b.Overhead(), scale)
		br.HasUser, br.HasOverhead = b.User() > 0, b.Overhead() > 0
		br.UserH, br.UserY = uh, round1(chartBase-uh)
		br.OverH, br.OverY = oh, round1(chartBase-uh-oh)
		br.Title = fmt.Sprintf("%s: %s %s, %s %s", title, t["user"], Human(b.User(), lang), t["overhead"], Human(b.Overhead(), lang))
		c.Bars = append(c.Bars, br)
		if show {
			c.Ticks = append(c.Ticks, tick{X: round1(x + slot/2), Label: short})
		}
	}
	return c
}

// height is n's bar height under a scale of max bytes; at least 1 unit
// when n is not zero, so that a little is seen.
func height(n, scale uint64) float64 {
	if n == 0 || scale == 0 {
		return 0
	}
	return round1(max(1, (chartBase-chartTop)*float64(n)/float64(scale)))
}

// niceMax is the axis' top for a largest value of n: 1, 2 or 5 times a
// power of ten, at least 1 KB.
func niceMax(n uint64) uint64 {
	if n <= 1000 {
		return 1000
	}
	p := math.Pow(10, math.Floor(math.Log10(float64(n))))
	for _, f := range []float64{1, 2, 5, 10} {
		if v := f * p; v >= float64(n) {
			return uint64(v)
		}
	}
	return uint64(10 * p)
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
