package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/hubtunnel/hubtunnel/store"
)

const auditUsage = `usage:
  hubrelay audit [--hub HUB] [--user USER] [--since TIME] [--kind KIND] [--limit N] [--json] [--config FILE]
                       print the audit log, newest first: logins, sessions
                       (who reached which hub and port, from where, how much),
                       grants, revokes, tokens, hubs coming and going.
                       TIME as for grant, a duration counting back (24h, 7d);
                       KIND one of ` + kindList + `;
                       N at most 100000 (default 100); --json for scripts`

// kinds are the audit records' kinds, for --kind's help.
var kinds = []string{store.KindLogin, store.KindLogout, store.KindSession, store.KindGrant, store.KindRevoke, store.KindToken, store.KindHubConnect, store.KindHubGone, store.KindEnroll, store.KindClone, store.KindHubKey}

const kindList = "login, logout, session, grant, revoke, token, hub-connect, hub-gone, enroll, clone, hub-key"

const (
	defaultAuditLimit = 100
	maxAuditLimit     = 100000
)

func (c cli) audit(in []string) error {
	a, err := parseArgs(in, []string{"hub", "user", "since", "kind", "limit"}, []string{"json"})
	if err != nil {
		return fmt.Errorf("%v\n%s", err, auditUsage)
	}
	if len(a.rest) != 0 {
		return errors.New(auditUsage)
	}
	f := store.AuditFilter{User: a.opt["user"], Kind: a.opt["kind"], Limit: defaultAuditLimit}
	if h := a.opt["hub"]; h != "" {
		f.Hubs = []string{h}
	}
	if s, ok := a.opt["since"]; ok {
		if f.Since, err = c.parseTime("since", s, true); err != nil {
			return err
		}
	}
	if s, ok := a.opt["limit"]; ok {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 || f.Limit > maxAuditLimit {
			return fmt.Errorf("--limit %q: give a number from 1 to %d", s, maxAuditLimit)
		}
	}
	ctx := context.Background()
	_, db, err := c.open(ctx, a.config)
	if err != nil {
		return err
	}
	defer db.Close()
	es, err := db.Audit(ctx, f)
	if err != nil {
		return err
	}
	if len(es) == f.Limit {
		fmt.Fprintf(c.stderr, "showing the newest %d records; --limit or --since for others\n", f.Limit)
	}
	if a.on["json"] {
		return c.auditJSON(es)
	}
	if len(es) == 0 {
		fmt.Fprintln(c.stdout, "no audit records match")
		if f.Kind != "" && !slices.Contains(kinds, f.Kind) {
			fmt.Fprintf(c.stdout, "(the kinds are %s)\n", kindList)
		}
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TIME\tKIND\tWHO\tHUB\tPORT\tSOURCE\tUP\tDOWN\tREQUESTS\tDURATION\tOUTCOME\tDETAIL")
	for _, e := range es {
		who := e.User
		if e.TokenID != 0 {
			who = fmt.Sprintf("token #%d", e.TokenID)
			if e.User != "" {
				who = e.User + ", " + who
			}
		}
		port, up, down, reqs, dur := "", "", "", "", ""
		if e.Port != 0 {
			port = strconv.Itoa(e.Port)
		}
		if e.Kind == store.KindSession || e.BytesUp != 0 || e.BytesDown != 0 {
			up, down, reqs = bytesText(e.BytesUp), bytesText(e.BytesDown), strconv.Itoa(e.Requests)
		}
		if !e.Ended.IsZero() {
			dur = durationText(e.Ended.Sub(e.At))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			e.At.In(c.zone()).Format("2006-01-02 15:04:05"), e.Kind, or(cell(who), "-"), or(cell(e.Hub), "-"), or(port, "-"), or(cell(e.Source), "-"),
			or(up, "-"), or(down, "-"), or(reqs, "-"), or(dur, "-"), or(cell(e.Outcome), "-"), cell(e.Detail))
	}
	return w.Flush()
}

// auditRecord is an audit record in --json: every key always there.
type auditRecord struct {
	ID         int64      `json:"id"`
	At         time.Time  `json:"at"`
	Kind       string     `json:"kind"`
	User       string     `json:"user"`
	TokenID    int64      `json:"token_id"`
	Hub        string     `json:"hub"`
	Port       int        `json:"port"`
	Source     string     `json:"source"`
	BytesUp    int64      `json:"bytes_up"`
	BytesDown  int64      `json:"bytes_down"`
	Requests   int        `json:"requests"`
	Ended      *time.Time `json:"ended"`       // a session's end, null for others
	DurationMs int64      `json:"duration_ms"` // a session's length
	Outcome    string     `json:"outcome"`
	Detail     string     `json:"detail"`
}

func (c cli) auditJSON(es []store.Event) error {
	out := make([]auditRecord, 0, len(es))
	for _, e := range es {
		r := auditRecord{ID: e.ID, At: e.At, Kind: e.Kind, User: e.User, TokenID: e.TokenID, Hub: e.Hub, Port: e.Port, Source: e.Source,
			BytesUp: e.BytesUp, BytesDown: e.BytesDown, Requests: e.Requests, Outcome: e.Outcome, Detail: e.Detail}
		if !e.Ended.IsZero() {
			ended := e.Ended
			r.Ended, r.DurationMs = &ended, e.Ended.Sub(e.At).Milliseconds()
		}
		out = append(out, r)
	}
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// cell is s for one table cell: control characters (a tab, a line break a
// client sent) would break the table's lines and columns.
func cell(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// bytesText is n for people: 512 B, 1.5 kB, 12 MB (powers of 1000).
func bytesText(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	v, units := float64(n), []string{"kB", "MB", "GB", "TB", "PB"}
	u := -1
	for v >= 1000 && u < len(units)-1 {
		v /= 1000
		u++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, units[u])
	}
	return fmt.Sprintf("%.0f %s", v, units[u])
}

// durationText is d to the second: 45s, 3m20s, 2h5m0s; under a second, 0s.
func durationText(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	return d.Round(time.Second).String()
}
