package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The committed results docs/benchmarks.md is generated from.
const (
	// PointsFile is what `make bench` writes: every scenario at its fixed
	// load, against its ceiling.
	PointsFile = "latest.json"
	// SweepFile is what `make bench-sweep` writes: the saga, relay and CDC
	// paths at rising offered rates.
	SweepFile = "sweep.json"
)

// Results are the benchmark runs a report is made of; either may be
// missing.
type Results struct {
	Points *Document
	Sweeps *SweepDocument
}

// LoadResults reads PointsFile and SweepFile from dir.
func LoadResults(dir string) (Results, error) {
	var res Results
	for name, into := range map[string]any{PointsFile: &res.Points, SweepFile: &res.Sweeps} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Results{}, err
		}
		if err := json.Unmarshal(b, into); err != nil {
			return Results{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	return res, nil
}

// Generated sections of a document lie between these markers; RenderDoc
// rewrites what is between them and leaves the rest as written.
const (
	markBegin = "<!-- BEGIN GENERATED: %s (make bench-docs; do not edit) -->"
	markEnd   = "<!-- END GENERATED: %s -->"
)

// RenderDoc returns doc with its generated sections ("figures", "sweeps")
// made from res.
func RenderDoc(doc []byte, res Results) ([]byte, error) {
	out := doc
	for name, body := range map[string]string{"figures": renderPoints(res.Points), "sweeps": renderSweeps(res.Sweeps)} {
		begin, end := []byte(fmt.Sprintf(markBegin, name)), []byte(fmt.Sprintf(markEnd, name))
		i, j := bytes.Index(out, begin), bytes.Index(out, end)
		if i < 0 || j < i {
			return nil, fmt.Errorf("no %q ... %q section in the document", begin, end)
		}
		var b bytes.Buffer
		b.Write(out[:i+len(begin)])
		b.WriteString("\n" + body)
		b.Write(out[j:])
		out = b.Bytes()
	}
	return out, nil
}

func renderPoints(d *Document) string {
	if d == nil {
		return "No `" + PointsFile + "` yet: run `make bench`.\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Run of %s (`bench/results/%s`) on %s.\n", d.GeneratedAt.UTC().Format("2006-01-02 15:04 MST"), PointsFile, machineLine(d.Machine))
	b.WriteString(loadWarning(d.Machine))
	b.WriteString("\n| scenario | comparison | TrackOps | ceiling | ratio | peak RSS | CPU steal |\n|---|---|---|---|---|---|---|\n")
	for _, r := range d.Results {
		if r.Status == StatusError {
			fmt.Fprintf(&b, "| %s | failed: %s | | | | | %s |\n", r.Scenario, cell(truncate(r.Error, 160)), percent(r.StealPercent))
			continue
		}
		for _, c := range r.Comparisons {
			ratio := "—"
			if c.Ratio != nil {
				ratio = "**" + strconv.FormatFloat(*c.Ratio, 'g', 3, 64) + "**"
				if strings.Contains(c.RatioOf, "p99") {
					ratio += " (p99)"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f MiB | %s |\n", r.Scenario, cell(c.Name), measure(c.TrackOps), measure(c.Ceiling), ratio, r.PeakRSSMiB, percent(r.StealPercent))
		}
	}
	return b.String()
}

func renderSweeps(d *SweepDocument) string {
	if d == nil {
		return "No `" + SweepFile + "` yet: run `make bench-sweep`.\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Sweep of %s (`bench/results/%s`) on %s.\n", d.GeneratedAt.UTC().Format("2006-01-02 15:04 MST"), SweepFile, machineLine(d.Machine))
	b.WriteString(loadWarning(d.Machine))
	for _, sw := range d.Sweeps {
		warm := ""
		if sw.WarmUpSeconds > 0 {
			warm = fmt.Sprintf(", after %s at the first rate that is not measured (the process's start)", seconds(sw.WarmUpSeconds))
		}
		fmt.Fprintf(&b, "\n### %s\n\n%s; each rate held %s%s.\n\n", sw.Scenario, sw.Description, seconds(sw.StepSeconds), warm)
		if sw.Status == StatusError {
			fmt.Fprintf(&b, "Failed: %s\n", truncate(sw.Error, 300))
			continue
		}
		fmt.Fprintf(&b, "![%[1]s: latency by offered rate](bench/%[1]s-latency.svg)\n![%[1]s: CPU per event by offered rate](bench/%[1]s-cpu.svg)\n\n", sw.Scenario)
		b.WriteString("| offered/s | delivered/s | p50 ms | p90 ms | p99 ms | max ms | TrackOps CPU µs/event | PostgreSQL CPU µs/event | not delivered | load average | CPU steal |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, s := range sw.Steps {
			mark := ""
			if s.Saturated {
				mark = " ⚠"
			}
			fmt.Fprintf(&b, "| %s%s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", count(s.Offered), mark, count(s.Delivered),
				num(s.Latency.P50), num(s.Latency.P90), num(s.Latency.P99), num(s.Latency.Max),
				count(s.TrackOpsCPUus), count(s.PostgresCPUus), s.Sent-s.Arrived, s.LoadAverage, percent(s.StealPercent))
		}
		if sw.SaturatedAt > 0 {
			fmt.Fprintf(&b, "\nSaturated at **%s/s** offered (⚠: delivered under %.0f %% of the offered rate, events left undelivered or errors, or p99 over %s).\n",
				count(sw.SaturatedAt), saturationShare*100, saturationP99)
		} else if n := len(sw.Steps); n > 0 {
			fmt.Fprintf(&b, "\nKept up with every rate offered, up to %s/s.\n", count(sw.Steps[n-1].Offered))
		}
	}
	return b.String()
}

func machineLine(m Machine) string {
	line := fmt.Sprintf("%d CPUs, %s/%s, %s; load average %s at start, %s at end", m.CPUs, m.GOOS, m.GOARCH, m.GoVersion,
		orDash(m.LoadAvgAtGo), orDash(m.LoadAvgEnd))
	if m.StealPercent != nil {
		line += "; CPU steal " + percent(m.StealPercent) + " over the run"
	}
	return line
}

// stealWarnAt is the CPU steal, in percent, from which a rendered run is
// flagged: beyond it the host, not the build, moves the figures.
const stealWarnAt = 5.0

// stealNote is a progress line's mention of the CPU steal, when known.
func stealNote(p *float64) string {
	if p == nil {
		return ""
	}
	return " (CPU steal " + percent(p) + ")"
}

// percent renders a share in percent; a dash when unknown.
func percent(p *float64) string {
	if p == nil {
		return "—"
	}
	return strconv.FormatFloat(*p, 'f', 1, 64) + " %"
}

// loadWarning flags a run that started on a machine already busier than its
// CPU count, or whose host took a good part of its CPU time for other
// guests: its absolute figures say more about the machine than about
// TrackOps.
func loadWarning(m Machine) string {
	var w string
	if f := strings.Fields(m.LoadAvgAtGo); len(f) > 0 && m.CPUs > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > float64(m.CPUs) {
			w += fmt.Sprintf("\n> **Loaded machine:** the load average at start (%s) was above the CPU count (%d); absolute figures are not representative, ratios less affected.\n", f[0], m.CPUs)
		}
	}
	if m.StealPercent != nil && *m.StealPercent >= stealWarnAt {
		w += fmt.Sprintf("\n> **Shared host:** the hypervisor gave %s of this machine's CPU time to other guests over the run (steal); absolute figures are not representative, and the ceilings, measured at other moments of the run, may have met a different share.\n", percent(m.StealPercent))
	}
	return w
}

func measure(m Measure) string {
	if m.Unavailable != "" {
		return cell(truncate(m.Unavailable, 120))
	}
	var parts []string
	if m.Throughput > 0 {
		parts = append(parts, count(m.Throughput)+"/s")
	}
	if m.Latency != nil && m.Latency.Count > 0 {
		parts = append(parts, fmt.Sprintf("p50 %s ms, p99 %s ms", num(m.Latency.P50), num(m.Latency.P99)))
	}
	if m.Errors > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", m.Errors))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// num prints a figure with three significant digits.
func num(f float64) string {
	if f == 0 {
		return "0"
	}
	if math.Abs(f) >= 1000 {
		return count(f)
	}
	return strconv.FormatFloat(f, 'g', 3, 64)
}

// count prints a whole figure with thousands separators.
func count(f float64) string {
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'g', 3, 64) + " s" }

func cell(s string) string { return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s) }

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
