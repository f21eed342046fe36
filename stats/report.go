package stats

import (
	"slices"
	"time"
)

// Report is the record as the page and the status API show it, at one
// moment: every bucket of the kept windows (zero where nothing was
// counted), today, this month and the plan.
type Report struct {
	Now      time.Time `json:"now"`
	ClockSet bool      `json:"clock_set"` // false: the hub's clock is not set; the buckets wait
	Since    time.Time `json:"since,omitzero"`
	Total    Counts    `json:"total"`   // since Since
	Pending  Counts    `json:"pending"` // waiting for the clock
	Today    Counts    `json:"today"`
	Month    Counts    `json:"month"`          // this calendar month
	Plan     *Plan     `json:"plan,omitempty"` // nil without a plan
	Hours    []Bucket  `json:"hours"`          // the last KeepHours local hours, oldest first
	Days     []Bucket  `json:"days"`           // the last KeepDays local dates, oldest first
	Months   []Bucket  `json:"months"`         // the last KeepMonths months, oldest first
	Events   []Event   `json:"events"`         // newest first
}

// Plan is this plan month's use against a mobile plan's volume.
type Plan struct {
	Bytes     uint64  `json:"bytes"`     // the volume
	Start     string  `json:"start"`     // the plan month's first day (local date)
	End       string  `json:"end"`       // its last day
	Used      uint64  `json:"used"`      // bytes both ways, overhead included, since Start
	Percent   float64 `json:"percent"`   // Used of Bytes, in percent
	Projected uint64  `json:"projected"` // Used at this pace until the plan month ends
}

// Report is the record now.
func (r *Recorder) Report() Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Now()
	rep := Report{Now: now, ClockSet: plausible(now), Since: r.rec.Since, Total: r.rec.Total, Pending: r.rec.Pending}
	for _, e := range slices.Backward(r.rec.Events) {
		rep.Events = append(rep.Events, e)
	}
	if !rep.ClockSet {
		return rep
	}
	loc := r.cfg.Location
	r.settleLocked(now)

	h0 := hourStart(now, loc).Add(-(KeepHours - 1) * time.Hour)
	for i := range KeepHours {
		rep.Hours = append(rep.Hours, find(r.rec.Hours, hourKey(h0.Add(time.Duration(i)*time.Hour), loc)))
	}
	y, m, d := now.In(loc).Date()
	for i := range KeepDays {
		rep.Days = append(rep.Days, find(r.rec.Days, time.Date(y, m, d-(KeepDays-1)+i, 12, 0, 0, 0, loc).Format(dayLayout)))
	}
	for i := range KeepMonths {
		rep.Months = append(rep.Months, find(r.rec.Months, time.Date(y, m-(KeepMonths-1)+time.Month(i), 1, 12, 0, 0, 0, loc).Format(monthLayout)))
	}
	rep.Today = rep.Days[len(rep.Days)-1].Counts
	rep.Month = rep.Months[len(rep.Months)-1].Counts
	if r.cfg.PlanMB > 0 {
		rep.Plan = r.planLocked(now)
	}
	return rep
}

// planLocked is the plan month around now: from the plan's start day
// (in a shorter month its last day) to the day before the next one.
func (r *Recorder) planLocked(now time.Time) *Plan {
	loc := r.cfg.Location
	lt := now.In(loc)
	y, m, d := lt.Date()
	if d < startDay(y, m, r.cfg.PlanStartDay) {
		m--
	}
	start := time.Date(y, m, startDay(y, m, r.cfg.PlanStartDay), 0, 0, 0, 0, loc)
	ny, nm, _ := time.Date(y, m+1, 1, 12, 0, 0, 0, loc).Date()
	end := time.Date(ny, nm, startDay(ny, nm, r.cfg.PlanStartDay), 0, 0, 0, 0, loc)
	p := &Plan{
		Bytes: uint64(r.cfg.PlanMB) * 1_000_000,
		Start: start.Format(dayLayout),
		End:   end.AddDate(0, 0, -1).Format(dayLayout),
	}
	for _, b := range r.rec.Days {
		if b.Key >= p.Start && b.Key <= p.End {
			p.Used += b.Total()
		}
	}
	p.Percent = float64(p.Used) * 100 / float64(p.Bytes)
	p.Projected = p.Used
	// Projected only after an hour: the first minutes say nothing of a month.
	if elapsed, whole := now.Sub(start), end.Sub(start); elapsed >= time.Hour && elapsed < whole {
		p.Projected = uint64(float64(p.Used) * float64(whole) / float64(elapsed))
	}
	return p
}

// startDay is the plan's start day in month m of year y: day, or the
// month's last day if it is shorter.
func startDay(y int, m time.Month, day int) int {
	last := time.Date(y, m+1, 0, 12, 0, 0, 0, time.UTC).Day()
	return min(day, last)
}

// find is the bucket key of the sorted bs, or an empty one.
func find(bs []Bucket, key string) Bucket {
	i, ok := slices.BinarySearchFunc(bs, key, func(b Bucket, k string) int { return compareKeys(b.Key, k) })
	if ok {
		return bs[i]
	}
	return Bucket{Key: key}
}
