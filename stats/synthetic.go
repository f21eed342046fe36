package stats

import "time"

// SyntheticDay is a record of one made-up day ending at now: 24 hours of
// user traffic (more in the evening, none at night) and about 5 KB of
// overhead an hour, with a reconnect in the afternoon, counted by the real
// Recorder as if each hour's traffic came at its half past. The browser
// test writes it as stats.json before it starts the agent, and checks the
// page draws what it holds.
func SyntheticDay(now time.Time, loc *time.Location) Record {
	t := now
	r := New(Config{Now: func() time.Time { return t }, Location: loc})
	h := hourStart(now, loc)
	for i := 23; i >= 0; i-- {
		t = h.Add(-time.Duration(i)*time.Hour + 30*time.Minute)
		if t.After(now) {
			t = now
		}
		r.Add(SyntheticHour(t.In(loc).Hour()))
		if i == 23 {
			r.Event(EventStart, "")
			r.Event(EventConnected, "")
		}
		if i == 8 {
			r.Event(EventDisconnected, "the relay is restarting")
			r.Event(EventReconnected, "the relay is restarting")
		}
	}
	return r.Record()
}

// SyntheticHour is what SyntheticDay counts in a local hour of the day:
// no user traffic from 1:00 to 5:59, otherwise more towards the evening;
// overhead every hour.
func SyntheticHour(hour int) Counts {
	c := Counts{OverheadIn: 2_400 + uint64(hour)*10, OverheadOut: 2_600 + uint64(hour)*10}
	if hour < 1 || hour > 5 {
		c.UserIn = 20_000 + uint64(hour)*15_000
		c.UserOut = 400_000 + uint64(hour)*60_000
	}
	return c
}
