package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hubtunnel/hubtunnel/internal/poll"
	"github.com/hubtunnel/hubtunnel/internal/promtext"
)

// scrape reads the relay's metrics with the Prometheus text parser and
// returns each sample as "name{label=value}" → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	m, err := promtext.Scrape(addr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func httpStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetrics scrapes the relay binary's metrics listener around one
// user session through the relay: the counters that session moved moved
// by the right amounts; /readyz fails once the store's file is gone.
func TestMetrics(t *testing.T) {
	s := newHub(t, setupOpts{offlineHubs: 2})
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.restartRelayWith("relay-metrics", fmt.Sprintf("metrics_listen = %q\n", addr), "")
	s.startAgent(agentOpts{})
	s.waitConnected(30 * time.Second)

	before := scrape(t, addr)
	for k, want := range map[string]float64{
		"hubrelay_hubs": 3, "hubrelay_hubs_online{transport=tcp}": 1, "hubrelay_hubs_online{transport=udp}": 0,
		"hubrelay_agent_connections_total{transport=tcp}": 1, "hubrelay_sessions_open": 0,
	} {
		if before[k] != want {
			t.Errorf("%s = %v, want %v", k, before[k], want)
		}
	}
	if before["hubrelay_handshake_initiations_total{transport=tcp}"] < 1 {
		t.Errorf("no handshake counted")
	}
	if before["go_goroutines"] == 0 || before["process_resident_memory_bytes"] == 0 {
		t.Errorf("the Go runtime and process collectors are missing")
	}

	code, body, err := s.get(s.url("http", "demo", 80, "/"))
	if err != nil || code != 200 {
		t.Fatalf("GET WebUI: %d %v", code, err)
	}
	s.waitSessionsLogged(1)
	var after map[string]float64
	poll.Until(t, 10*time.Second, "the session to be counted", func() bool {
		after = scrape(t, addr)
		return after["hubrelay_sessions_total"] > before["hubrelay_sessions_total"]
	})
	delta := func(k string) float64 { return after[k] - before[k] }
	if d := delta("hubrelay_sessions_total"); d != 1 {
		t.Errorf("sessions_total moved by %v, want 1", d)
	}
	if d := delta("hubrelay_requests_total"); d != 1 {
		t.Errorf("requests_total moved by %v, want 1", d)
	}
	// The bytes are the session's, as its audit record has them.
	var recs []struct {
		BytesUp   float64 `json:"bytes_up"`
		BytesDown float64 `json:"bytes_down"`
	}
	poll.Until(t, 10*time.Second, "the session's audit record", func() bool {
		out, err := runErr(bins.Hubrelay, "audit", "--config", s.relayConf, "--kind", "session", "--json")
		return err == nil && json.Unmarshal([]byte(out), &recs) == nil && len(recs) == 1
	})
	if d := delta("hubrelay_bytes_total{direction=down}"); d != recs[0].BytesDown || d < float64(len(body)) {
		t.Errorf("bytes down moved by %v; the session's record says %v, the page is %d bytes", d, recs[0].BytesDown, len(body))
	}
	if d := delta("hubrelay_bytes_total{direction=up}"); d != recs[0].BytesUp {
		t.Errorf("bytes up moved by %v; the session's record says %v", d, recs[0].BytesUp)
	}
	if after["hubrelay_sessions_open"] != 0 {
		t.Errorf("sessions_open = %v after the session ended", after["hubrelay_sessions_open"])
	}

	dashboardMatches(t, after)

	if code, text := httpStatus(t, "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, text)
	}
	if code, text := httpStatus(t, "http://"+addr+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, text)
	}
	if err := os.Rename(s.bed.Store, s.bed.Store+".gone"); err != nil {
		t.Fatal(err)
	}
	code, text := httpStatus(t, "http://"+addr+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(text, "store") {
		t.Errorf("/readyz with the store gone: %d %q, want 503 naming the store", code, text)
	}
	os.Rename(s.bed.Store+".gone", s.bed.Store)
}

// TestMetricsListenPublic: a public metrics_listen is refused with the
// config's line, unless metrics_public.
func TestMetricsListenPublic(t *testing.T) {
	s := newHub(t, setupOpts{})
	s.relay.stop(t)
	writeFile(t, s.relayConf, "metrics_listen = \"0.0.0.0:9310\"\n"+readFileString(s.relayConf))
	out, err := runErr(bins.Hubrelay, "run", "--config", s.relayConf)
	if err == nil || !strings.Contains(out, ":1: metrics_listen:") || !strings.Contains(out, "metrics_public") {
		t.Fatalf("a public metrics_listen: err %v, output %q; want a refusal at line 1 naming metrics_public", err, out)
	}
}

// dashboardMatches fails the test for every query of the Grafana
// dashboard (deploy/grafana) that names a metric the relay does not
// export, or shows a label ({{label}} in its legend) the metric has not.
func dashboardMatches(t *testing.T, scraped map[string]float64) {
	t.Helper()
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr, LegendFormat string }
		}
	}
	if err := json.Unmarshal([]byte(readFileString("../deploy/grafana/hubrelay.json")), &dash); err != nil {
		t.Fatalf("the Grafana dashboard: %v", err)
	}
	labels := map[string]map[string]bool{} // metric → its labels
	for k := range scraped {
		name, rest, _ := strings.Cut(k, "{")
		if labels[name] == nil {
			labels[name] = map[string]bool{}
		}
		for _, l := range regexp.MustCompile(`\{(\w+)=`).FindAllStringSubmatch("{"+rest, -1) {
			labels[name][l[1]] = true
		}
	}
	metricName := regexp.MustCompile(`\b(?:hubrelay|go|process)_[a-z0-9_]+\b`)
	legendLabel := regexp.MustCompile(`\{\{(\w+)\}\}`)
	n := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			names := metricName.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no metric of the relay", p.Title, q.Expr)
			}
			for _, m := range names {
				n++
				if labels[m] == nil {
					t.Errorf("panel %q: query %q: the relay exports no %s", p.Title, q.Expr, m)
					continue
				}
				for _, l := range legendLabel.FindAllStringSubmatch(q.LegendFormat, -1) {
					if !labels[m][l[1]] && !strings.Contains(q.Expr, "by ("+l[1]+")") {
						t.Errorf("panel %q: legend %q: %s has no label %s", p.Title, q.LegendFormat, m, l[1])
					}
				}
			}
		}
	}
	if n < 10 {
		t.Errorf("the dashboard's queries name %d metrics; want its dozen panels' queries", n)
	}
}
