package bench

import (
	"testing"
	"time"
)

func TestPhaseMeasureCountsOnlyThePhaseAndItsMissingArrivals(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := newTracker()
	// An earlier phase's change must not count in this one.
	tr.schedule("earlier", start.Add(-time.Second))
	tr.arrive("earlier", start.Add(-time.Second+time.Hour))
	for i, id := range []string{"a", "b", "c", "d"} {
		tr.schedule(id, start.Add(time.Duration(i)*time.Second))
	}
	tr.arrive("a", start.Add(2*time.Millisecond))
	tr.arrive("b", start.Add(time.Second+4*time.Millisecond))
	tr.arrive("c", start.Add(2*time.Second+8*time.Millisecond))
	tr.arrive("c", start.Add(3*time.Second)) // a second delivery: the first one counts

	m := phaseMeasure("test", []string{"a", "b", "c", "d"}, tr, start)
	if m.Count != 3 || m.Errors != 1 {
		t.Fatalf("count %d, errors %d; want 3 arrived and 1 missing", m.Count, m.Errors)
	}
	if m.Latency.Max != 8 || m.Latency.P50 != 4 {
		t.Errorf("latency p50 %v ms, max %v ms; want 4 and 8", m.Latency.P50, m.Latency.Max)
	}
	// Three arrivals over the 2.008 s from the phase's start to the last.
	if want := round3(3 / 2.008); m.Throughput != want {
		t.Errorf("throughput %v/s, want %v", m.Throughput, want)
	}
}
