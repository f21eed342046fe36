package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of the results table.
type Row struct {
	Group   string // "throughput", "latency", …
	What    string
	Value   string
	Budget  string // "" when BRIEF.md sets none
	Verdict string // "pass", "FAIL" or "" (no budget)
}

// Report is what a run found.
type Report struct {
	Started  time.Time
	Took     time.Duration
	Machine  []string // "key: value" lines
	Rows     []Row
	Sections []Section // how each number was measured, and raw detail
}

// Section is a part of BENCHMARKS.md below the table.
type Section struct {
	Title string
	Body  string // Markdown
}

func (r *Report) add(group, what, value, budget string, pass *bool) {
	v := ""
	if pass != nil {
		v = "pass"
		if !*pass {
			v = "FAIL"
		}
	}
	r.Rows = append(r.Rows, Row{group, what, value, budget, v})
}

func (r *Report) section(title, format string, args ...any) {
	r.Sections = append(r.Sections, Section{title, fmt.Sprintf(format, args...)})
}

func ptr(b bool) *bool { return &b }

// Print writes the table as aligned text.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tWHAT\tMEASURED\tBUDGET\t")
	group := ""
	for _, row := range r.Rows {
		g := row.Group
		if g == group {
			g = ""
		}
		group = row.Group
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g, row.What, row.Value, row.Budget, row.Verdict)
	}
	tw.Flush()
}

// Markdown renders BENCHMARKS.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("Written by `make bench` (bench/, scripts/bench.sh); every number below comes from one run of it. ")
	b.WriteString("The budgets are those of BRIEF.md, read in decimal units (1 KB = 1000 B, 1 MB = 10⁶ B), the stricter reading. ")
	fmt.Fprintf(&b, "Run started %s and took %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	b.WriteString("## Machine\n\n")
	for _, m := range r.Machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n## Results\n\n| | what | measured | budget | |\n|---|---|---|---|---|\n")
	group := ""
	for _, row := range r.Rows {
		g := row.Group
		if g == group {
			g = ""
		}
		group = row.Group
		verdict := row.Verdict
		if verdict == "FAIL" {
			verdict = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", g, mdEscape(row.What), mdEscape(row.Value), mdEscape(row.Budget), verdict)
	}
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", s.Title, strings.TrimSpace(s.Body))
	}
	return b.String()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// Formatting helpers.

func fmtMB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

func fmtSec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
