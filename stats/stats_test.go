package stats

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func berlin(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	return loc
}

// logs collects log lines.
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) Logf(format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func keys(bs []Bucket) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Key)
	}
	return out
}

func TestNewYearsEveRollsOverTheHourDayMonthAndYear(t *testing.T) {
	loc := berlin(t)
	c := &clock{t: time.Date(2026, 12, 31, 23, 59, 30, 0, loc)}
	r := New(Config{Now: c.Now, Location: loc})
	r.Add(Counts{UserIn: 100})
	c.Add(time.Minute)
	r.Add(Counts{UserIn: 200, OverheadOut: 5})
	rec := r.Record()
	if got, want := strings.Join(keys(rec.Hours), " "), "2026-12-31T22:00:00Z 2026-12-31T23:00:00Z"; got != want {
		t.Errorf("hours = %s, want %s", got, want)
	}
	if got, want := strings.Join(keys(rec.Days), " "), "2026-12-31 2027-01-01"; got != want {
		t.Errorf("days = %s, want %s", got, want)
	}
	if got, want := strings.Join(keys(rec.Months), " "), "2026-12 2027-01"; got != want {
		t.Errorf("months = %s, want %s", got, want)
	}
	rep := r.Report()
	if rep.Today.UserIn != 200 || rep.Today.OverheadOut != 5 || rep.Month.Total() != 205 || rep.Total.Total() != 305 {
		t.Errorf("today %+v, month %+v, total %+v; want 205 today and this month, 305 in all", rep.Today, rep.Month, rep.Total)
	}
	if len(rep.Hours) != KeepHours || len(rep.Days) != KeepDays || len(rep.Months) != KeepMonths {
		t.Errorf("report has %d hours, %d days, %d months", len(rep.Hours), len(rep.Days), len(rep.Months))
	}
	if rep.Hours[KeepHours-2].UserIn != 100 || rep.Hours[KeepHours-1].UserIn != 200 {
		t.Errorf("last two hours = %+v, %+v", rep.Hours[KeepHours-2], rep.Hours[KeepHours-1])
	}
}

func TestOldBucketsLeaveTheirWindows(t *testing.T) {
	loc := berlin(t)
	c := &clock{t: time.Date(2026, 1, 10, 12, 0, 0, 0, loc)}
	r := New(Config{Now: c.Now, Location: loc})
	r.Add(Counts{UserIn: 1})
	c.Add(48 * time.Hour) // the first hour is 48 h old: gone; its day stays
	r.Add(Counts{UserIn: 1})
	rec := r.Record()
	if len(rec.Hours) != 1 || len(rec.Days) != 2 {
		t.Errorf("after 48 h: hours %v, days %v; want the new hour only and both days", keys(rec.Hours), keys(rec.Days))
	}
	c.Set(time.Date(2026, 2, 10, 12, 0, 0, 0, loc)) // 31 days after Jan 10
	r.Add(Counts{UserIn: 1})
	rec = r.Record()
	if got := strings.Join(keys(rec.Days), " "); got != "2026-01-12 2026-02-10" {
		t.Errorf("days = %s, want Jan 12 (31 days ago is Jan 11) and Feb 10", got)
	}
	c.Set(time.Date(2027, 1, 5, 12, 0, 0, 0, loc))
	r.Add(Counts{UserIn: 1})
	if got := strings.Join(keys(r.Record().Months), " "); got != "2026-02 2027-01" {
		t.Errorf("months = %s, want 2026-02 (the 12th month back) and 2027-01", got)
	}
}

func TestDaylightSavingTime(t *testing.T) {
	loc := berlin(t)
	// Autumn: 02:00–03:00 comes twice (CEST, then CET): two hour buckets.
	c := &clock{t: time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)} // 02:30 CEST
	r := New(Config{Now: c.Now, Location: loc})
	r.Add(Counts{UserIn: 1})
	c.Add(time.Hour) // 02:30 CET
	r.Add(Counts{UserIn: 2})
	c.Add(time.Hour) // 03:30 CET
	r.Add(Counts{UserIn: 4})
	rec := r.Record()
	if got, want := strings.Join(keys(rec.Hours), " "), "2026-10-25T00:00:00Z 2026-10-25T01:00:00Z 2026-10-25T02:00:00Z"; got != want {
		t.Errorf("autumn hours = %s, want %s", got, want)
	}
	if len(rec.Days) != 1 || rec.Days[0].UserIn != 7 {
		t.Errorf("autumn days = %+v, want one day with all 7 bytes", rec.Days)
	}
	rep := r.Report()
	for i := 1; i < len(rep.Hours); i++ {
		a, _ := time.Parse(time.RFC3339, rep.Hours[i-1].Key)
		b, _ := time.Parse(time.RFC3339, rep.Hours[i].Key)
		if b.Sub(a) != time.Hour {
			t.Fatalf("report hours %s and %s are not an hour apart", rep.Hours[i-1].Key, rep.Hours[i].Key)
		}
	}
	// Spring: 02:00–03:00 does not exist; 01:30 CET and 03:30 CEST are
	// consecutive hours of one day.
	c.Set(time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC))
	r = New(Config{Now: c.Now, Location: loc})
	r.Add(Counts{UserIn: 1})
	c.Add(time.Hour)
	r.Add(Counts{UserIn: 2})
	rec = r.Record()
	if got, want := strings.Join(keys(rec.Hours), " "), "2026-03-29T00:00:00Z 2026-03-29T01:00:00Z"; got != want {
		t.Errorf("spring hours = %s, want %s", got, want)
	}
	if h := hourStart(c.Now(), loc).In(loc); h.Hour() != 3 {
		t.Errorf("the hour after 01:xx CET is %s, want 03:00 CEST", h)
	}
}

func TestCountersSurviveARestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), FileName)
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	r := New(Config{File: file, Now: c.Now, Location: time.UTC})
	r.Add(Counts{UserIn: 1000, UserOut: 2000, OverheadIn: 30, OverheadOut: 40})
	r.Event(EventConnected, "")
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	before := r.Record()

	c.Add(5 * time.Minute)
	r2 := New(Config{File: file, Now: c.Now, Location: time.UTC})
	after := r2.Record()
	if after.Total != before.Total || len(after.Hours) != 1 || after.Hours[0] != before.Hours[0] || len(after.Events) != 1 {
		t.Fatalf("after a restart: %+v\nwant %+v", after, before)
	}
	r2.Add(Counts{UserIn: 1})
	if got := r2.Report().Today.UserIn; got != 1001 {
		t.Errorf("today's user bytes in after the restart = %d, want 1001", got)
	}
}

func TestADamagedFileIsAWarningAndAFreshRecord(t *testing.T) {
	dir := t.TempDir()
	good, err := (&Record{Version: recordVersion, Total: Counts{UserIn: 5}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, content string }{
		{"garbage", "\x00\x01 not json"},
		{"truncated", string(good[:len(good)/2])},
		{"empty", ""},
		{"other version", `{"version": 99}`},
		{"unsorted", `{"version": 1, "hours": [{"key": "2026-05-01T11:00:00Z"}, {"key": "2026-05-01T10:00:00Z"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(file, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var l logs
			c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
			r := New(Config{File: file, Now: c.Now, Logf: l.Logf})
			if !strings.Contains(l.String(), "warning") || !strings.Contains(l.String(), "start again from zero") {
				t.Errorf("log = %q, want a warning that the statistics start again", l.String())
			}
			if rec := r.Record(); !rec.Total.IsZero() || len(rec.Hours) != 0 {
				t.Errorf("record = %+v, want an empty one", rec)
			}
			r.Add(Counts{UserIn: 7})
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			rec, err := ReadFile(file)
			if err != nil || rec.Total.UserIn != 7 {
				t.Errorf("the file after Close: %+v, %v; want a good record of 7 bytes", rec, err)
			}
		})
	}
}

func TestAFileFromTheFutureLeavesTheBuckets(t *testing.T) {
	file := filepath.Join(t.TempDir(), FileName)
	// Saved while the clock ran a day ahead.
	ahead := &clock{t: time.Date(2026, 5, 2, 10, 0, 0, 0, time.UTC)}
	r := New(Config{File: file, Now: ahead.Now, Location: time.UTC})
	r.Add(Counts{UserIn: 1000})
	r.Close()

	var l logs
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	r = New(Config{File: file, Now: c.Now, Location: time.UTC, Logf: l.Logf})
	rec := r.Record()
	if len(rec.Hours)+len(rec.Days) != 0 || len(rec.Months) != 1 {
		t.Errorf("after the clock went back a day: hours %v, days %v, months %v; want only this month", keys(rec.Hours), keys(rec.Days), keys(rec.Months))
	}
	if rec.Total.UserIn != 1000 {
		t.Errorf("total = %+v, want the 1000 bytes kept", rec.Total)
	}
	if !strings.Contains(l.String(), "1000 bytes were counted at times after") {
		t.Errorf("log = %q, want a warning naming the 1000 bytes", l.String())
	}
	// Tomorrow comes: the hour the bytes were in is not filled twice.
	r.Add(Counts{UserIn: 1})
	c.Set(ahead.Now())
	r.Add(Counts{UserIn: 2})
	if got := r.Report().Today.UserIn; got != 2 {
		t.Errorf("the next day's bytes = %d, want 2", got)
	}
}

func TestCountsWaitForTheClock(t *testing.T) {
	file := filepath.Join(t.TempDir(), FileName)
	c := &clock{t: time.Date(1970, 1, 1, 0, 5, 0, 0, time.UTC)} // a CCU before NTP
	r := New(Config{File: file, Now: c.Now, Location: time.UTC})
	r.Add(Counts{UserIn: 10, OverheadOut: 3})
	rep := r.Report()
	if rep.ClockSet || len(rep.Hours) != 0 || rep.Pending.Total() != 13 {
		t.Errorf("with the clock at 1970: %+v; want no buckets and 13 bytes pending", rep)
	}
	r.Close()
	rec, err := ReadFile(file)
	if err != nil || len(rec.Hours)+len(rec.Days)+len(rec.Months) != 0 || rec.Pending.Total() != 13 || !rec.Saved.IsZero() {
		t.Fatalf("file with the clock unset: %+v, %v; want only the pending 13 bytes", rec, err)
	}

	c.Set(time.Date(2026, 5, 1, 10, 20, 0, 0, time.UTC)) // NTP answered
	r = New(Config{File: file, Now: c.Now, Location: time.UTC})
	r.Add(Counts{UserIn: 1})
	rep = r.Report()
	if rep.Today.Total() != 14 || !rep.Pending.IsZero() || rep.Hours[KeepHours-1].Key != "2026-05-01T10:00:00Z" {
		t.Errorf("once the clock is set: today %+v, pending %+v, last hour %s; want all 14 bytes in 10:00", rep.Today, rep.Pending, rep.Hours[KeepHours-1].Key)
	}
}

func TestWritesAtMostEveryTenMinutesAndAtClose(t *testing.T) {
	file := filepath.Join(t.TempDir(), FileName)
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	writes := 0
	r := New(Config{File: file, Now: c.Now, Location: time.UTC, WriteFile: func(path string, data []byte, perm os.FileMode) error {
		writes++
		return os.WriteFile(path, data, perm)
	}})
	// Two hours of samples every 10 s, with traffic in each.
	for range 2 * 360 {
		c.Add(10 * time.Second)
		r.Add(Counts{UserIn: 100, OverheadIn: 1})
	}
	if writes != 12 {
		t.Errorf("%d writes in two hours, want 12 (one per 10 minutes)", writes)
	}
	// Idle: no change, no write.
	for range 360 {
		c.Add(10 * time.Second)
		r.Add(Counts{})
	}
	if writes != 12 {
		t.Errorf("%d writes after an idle hour, want still 12", writes)
	}
	r.Event(EventStop, "")
	r.Close()
	r.Close()
	if writes != 13 {
		t.Errorf("%d writes after Close (twice), want 13", writes)
	}
	if rec, err := ReadFile(file); err != nil || rec.Total.UserIn != 720*100 {
		t.Errorf("file: %+v, %v", rec, err)
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name       string
		now        time.Time
		startDay   int
		start, end string
	}{
		{"calendar month", time.Date(2026, 4, 16, 0, 0, 0, 0, time.UTC), 1, "2026-04-01", "2026-04-30"},
		{"from the 15th, before it", time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC), 15, "2026-03-15", "2026-04-14"},
		{"from the 15th, after it", time.Date(2026, 4, 20, 0, 0, 0, 0, time.UTC), 15, "2026-04-15", "2026-05-14"},
		{"the 31st in February", time.Date(2026, 2, 28, 12, 0, 0, 0, time.UTC), 31, "2026-02-28", "2026-03-30"},
		{"January from December", time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC), 20, "2025-12-20", "2026-01-19"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: tc.now}
			r := New(Config{Now: c.Now, Location: time.UTC, PlanMB: 500, PlanStartDay: tc.startDay})
			r.Add(Counts{UserIn: 50_000_000, OverheadOut: 0})
			p := r.Report().Plan
			if p == nil || p.Start != tc.start || p.End != tc.end {
				t.Fatalf("plan = %+v, want %s – %s", p, tc.start, tc.end)
			}
			if p.Used != 50_000_000 || p.Percent != 10 || p.Bytes != 500_000_000 {
				t.Errorf("plan = %+v, want 50 MB used, 10 %% of 500 MB", p)
			}
		})
	}
	// Projection: 100 MB in the first 10 days of a 30-day month is 300 MB.
	c := &clock{t: time.Date(2026, 4, 11, 0, 0, 0, 0, time.UTC)}
	r := New(Config{Now: c.Now, Location: time.UTC, PlanMB: 500})
	r.Add(Counts{UserIn: 80_000_000, OverheadIn: 20_000_000})
	p := r.Report().Plan
	if p.Projected != 300_000_000 || p.Percent != 20 {
		t.Errorf("plan = %+v, want 20 %% used, 300 MB projected", p)
	}
	if r := New(Config{Now: c.Now}); r.Report().Plan != nil {
		t.Error("a plan without plan_mb")
	}
}

func TestEventsKeepTheLast100(t *testing.T) {
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	r := New(Config{Now: c.Now})
	for i := range 150 {
		c.Add(time.Second)
		r.Event(EventReconnected, fmt.Sprint(i))
	}
	ev := r.Report().Events
	if len(ev) != KeepEvents || ev[0].Why != "149" || ev[len(ev)-1].Why != "50" {
		t.Errorf("%d events, first %+v, last %+v; want 100, newest (149) first, 50 last", len(ev), ev[0], ev[len(ev)-1])
	}
}

func TestHuman(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		lang string
		want string
	}{
		{0, "en", "0 B"},
		{999, "de", "999 B"},
		{1500, "de", "1,50 KB"},
		{1500, "en", "1.50 KB"},
		{123_456, "de", "123 KB"},
		{45_600_000, "de", "45,6 MB"},
		{2_500_000_000, "en", "2.50 GB"},
	} {
		if got := Human(tc.n, tc.lang); got != tc.want {
			t.Errorf("Human(%d, %s) = %q, want %q", tc.n, tc.lang, got, tc.want)
		}
	}
}

func TestPageDrawsTheSyntheticDay(t *testing.T) {
	now := time.Date(2026, 5, 1, 21, 10, 0, 0, time.UTC)
	r := New(Config{Now: func() time.Time { return now }, Location: time.UTC, PlanMB: 500})
	r.rec = SyntheticDay(now, time.UTC)
	for _, tc := range []struct{ lang, want string }{{"de", "von 500 MB"}, {"en", "of 500 MB"}, {"fr", "of 500 MB"}} {
		w := httptest.NewRecorder()
		Handler(r, tc.lang).ServeHTTP(w, httptest.NewRequest("GET", "/addons/hubtunnel/panel/stats", nil))
		body := w.Body.String()
		if !strings.Contains(body, tc.want) {
			t.Errorf("%s page lacks %q", tc.lang, tc.want)
		}
		// 48 + 31 bars; 19 hours of user traffic in the last 24 (none
		// from 1:00 to 5:59), overhead in all 24.
		if n := strings.Count(body, `<g class="bar"`); n != KeepHours+KeepDays {
			t.Errorf("%d bars, want %d", n, KeepHours+KeepDays)
		}
		hours := body[strings.Index(body, `id="hours"`):strings.Index(body, `id="days"`)]
		if u, o := strings.Count(hours, `class="user"`), strings.Count(hours, `class="overhead"`); u != 19 || o != 24 {
			t.Errorf("hours chart: %d user and %d overhead bars, want 19 and 24", u, o)
		}
		if len(body) > 150_000 {
			t.Errorf("page is %d bytes, over the 150 KB budget", len(body))
		}
	}
	w := httptest.NewRecorder()
	Handler(r, "en").ServeHTTP(w, httptest.NewRequest("GET", "/addons/hubtunnel/panel/api/stats", nil))
	if ct := w.Header().Get("Content-Type"); ct != "application/json" || !strings.Contains(w.Body.String(), `"plan":{"bytes":500000000`) {
		t.Errorf("api: %s %s", ct, w.Body.String()[:min(200, w.Body.Len())])
	}
	w = httptest.NewRecorder()
	Handler(r, "en").ServeHTTP(w, httptest.NewRequest("POST", "/addons/hubtunnel/panel/stats", nil))
	if w.Code != 405 {
		t.Errorf("POST: %d, want 405", w.Code)
	}
}

func TestRetractTakesOverheadBackFromThePresent(t *testing.T) {
	c := &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}
	r := New(Config{Now: c.Now, Location: time.UTC})
	r.Add(Counts{UserIn: 100, OverheadIn: 5000, OverheadOut: 10})
	r.Retract(Counts{OverheadIn: 4900, OverheadOut: 50})
	rep := r.Report()
	if want := (Counts{UserIn: 100, OverheadIn: 100}); rep.Today != want || rep.Hours[KeepHours-1].Counts != want || rep.Month != want || rep.Total != want {
		t.Errorf("after retracting: today %+v, hour %+v, month %+v, total %+v; want %+v", rep.Today, rep.Hours[KeepHours-1].Counts, rep.Month, rep.Total, want)
	}
}
