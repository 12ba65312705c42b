package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchmarksDocIsGenerated: docs/benchmarks.md and the charts in
// docs/bench/ are exactly what the generator makes of the committed
// results, so the document cannot drift from a run. After a run, or after
// editing the generator, `make bench-docs` brings them back in line.
func TestBenchmarksDocIsGenerated(t *testing.T) {
	t.Parallel()
	res, err := LoadResults(filepath.Join("..", "..", "bench", "results"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Points == nil || res.Sweeps == nil {
		t.Fatalf("bench/results lacks %s or %s", PointsFile, SweepFile)
	}
	docPath := filepath.Join("..", "..", "docs", "benchmarks.md")
	doc, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := RenderDoc(doc, res)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, want) {
		t.Errorf("docs/benchmarks.md differs from what bench/results/*.json make of it: run make bench-docs")
	}
	charts, err := Charts(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) != 2*len(res.Sweeps.Sweeps) {
		t.Errorf("%d charts for %d sweeps", len(charts), len(res.Sweeps.Sweeps))
	}
	for name, b := range charts {
		got, err := os.ReadFile(filepath.Join("..", "..", "docs", "bench", name))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("docs/bench/%s is not the chart of the committed sweep (%v): run make bench-docs", name, err)
		}
		if !bytes.Contains(doc, []byte("(bench/"+name+")")) {
			t.Errorf("docs/benchmarks.md does not show docs/bench/%s", name)
		}
	}
}

func TestRenderDocReplacesOnlyTheGeneratedSections(t *testing.T) {
	t.Parallel()
	ratio, runSteal, relaySteal, stepSteal := 0.5, 12.5, 3.0, 40.0
	res := Results{
		Points: &Document{GeneratedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Machine: Machine{CPUs: 2, LoadAvgAtGo: "0.50 0.4 0.3", StealPercent: &runSteal},
			Results: []Result{{Scenario: "relay", Status: StatusOK, PeakRSSMiB: 60, StealPercent: &relaySteal, Comparisons: []Comparison{{
				Name: "drain", Ratio: &ratio, RatioOf: "trackops throughput / ceiling throughput",
				TrackOps: Measure{Throughput: 12345.6}, Ceiling: Measure{Throughput: 24691.2}}}}}},
		Sweeps: &SweepDocument{Machine: Machine{CPUs: 2, LoadAvgAtGo: "7.0 1 1"}, Sweeps: []Sweep{{Scenario: "cdc", Status: StatusOK, StepSeconds: 10, WarmUpSeconds: 2, SaturatedAt: 2000,
			Steps: []SweepStep{{Offered: 1000, Delivered: 1000, Sent: 10000, Arrived: 10000, Latency: Latency{P50: 2, P99: 9}},
				{Offered: 2000, Delivered: 1500, Sent: 20000, Arrived: 19000, Latency: Latency{P50: 900, P99: 2500}, Saturated: true, StealPercent: &stepSteal}}}}},
	}
	doc := "# Prose\n\n<!-- BEGIN GENERATED: figures (make bench-docs; do not edit) -->\nold figures\n<!-- END GENERATED: figures -->\nmiddle prose\n" +
		"<!-- BEGIN GENERATED: sweeps (make bench-docs; do not edit) -->\n<!-- END GENERATED: sweeps -->\nend prose\n"
	out, err := RenderDoc([]byte(doc), res)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{"# Prose\n", "middle prose\n", "end prose\n", "Run of 2026-01-02 03:04 UTC",
		"| relay | drain | 12,346/s | 24,691/s | **0.5** | 60 MiB | 3.0 % |", "| 2,000 ⚠ | 1,500 | 900 |",
		"CPU steal 12.5 % over the run", "hypervisor gave 12.5 % of this machine's CPU time to other guests", "Saturated at **2,000/s** offered",
		"load average at start (7.0) was above the CPU count", "(bench/cdc-latency.svg)",
		"each rate held 10 s, after 2 s at the first rate that is not measured"} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered document lacks %q:\n%s", want, s)
		}
	}
	// The sweep's machine is loaded but its steal unknown (a run recorded
	// before steal was, or off Linux): no steal warning for it, and a dash
	// for its step that has none.
	if strings.Contains(s, "old figures") || strings.Count(s, "Loaded machine") != 1 || strings.Count(s, "Shared host") != 1 ||
		!strings.Contains(s, "| 0 |  | — |\n") || !strings.Contains(s, "| 1000 |  | 40.0 % |\n") {
		t.Errorf("rendered document:\n%s", s)
	}
	again, _ := RenderDoc(out, res)
	if !bytes.Equal(again, out) {
		t.Error("rendering twice changes the document")
	}
	if _, err := RenderDoc([]byte("# no markers\n"), res); err == nil {
		t.Error("a document without generated sections was accepted")
	}
}
