package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trackops/trackops/internal/cpusteal"
)

// Scenarios lists the benchmark scenarios in the order `bench all` runs them.
var Scenarios = []string{"api-create", "api-read", "relay", "cdc", "saga"}

// warmUp is how long a scenario loads the process before measuring it: its
// first requests and events pay for its start, which no figure is about.
const warmUp = 2 * time.Second

// Result statuses.
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable"
	StatusError       = "error"
)

// Result is one scenario's JSON summary.
type Result struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	// Status is ok, unavailable (a part of TrackOps the scenario needs is
	// not in this build; see Unavailable) or error.
	Status      string       `json:"status"`
	Unavailable string       `json:"unavailable,omitempty"`
	Error       string       `json:"error,omitempty"`
	Comparisons []Comparison `json:"comparisons"`
	// PeakRSSBytes is the TrackOps process's VmHWM at the end of the
	// scenario (embedded broker included).
	PeakRSSBytes int64    `json:"peak_rss_bytes"`
	PeakRSSMiB   float64  `json:"peak_rss_mib"`
	Notes        []string `json:"notes,omitempty"`
	ElapsedS     float64  `json:"elapsed_s"`
	// StealPercent is the share of the machine's CPU time the hypervisor
	// gave to other guests while the scenario ran; absent where unknown.
	StealPercent *float64 `json:"cpu_steal_percent,omitempty"`
}

// Comparison is one figure of TrackOps next to its ceiling, measured in the
// same run on the same machine.
type Comparison struct {
	Name     string  `json:"name"`
	TrackOps Measure `json:"trackops"`
	Ceiling  Measure `json:"ceiling"`
	// Ratio is TrackOps over the ceiling as RatioOf says; null when
	// either side is unavailable.
	Ratio   *float64 `json:"ratio"`
	RatioOf string   `json:"ratio_of"`
}

// Measure is one side of a comparison.
type Measure struct {
	What        string   `json:"what"`
	Unavailable string   `json:"unavailable,omitempty"`
	Count       int      `json:"count"`
	Errors      int      `json:"errors"`
	Throughput  float64  `json:"throughput_per_s,omitempty"`
	Latency     *Latency `json:"latency,omitempty"`
	ErrorSample string   `json:"error_sample,omitempty"`
}

// throughputComparison builds a comparison whose ratio is TrackOps'
// throughput over the ceiling's (higher is better, 1 is the ceiling).
func throughputComparison(name string, t, c Measure) Comparison {
	cmp := Comparison{Name: name, TrackOps: t, Ceiling: c, RatioOf: "trackops throughput / ceiling throughput (1.0 = as fast as the ceiling)"}
	if t.Unavailable == "" && c.Unavailable == "" {
		cmp.Ratio = ratio(t.Throughput, c.Throughput)
	}
	return cmp
}

// latencyComparison builds a comparison whose ratio is TrackOps' p99 over
// the ceiling's (lower is better, 1 is the ceiling).
func latencyComparison(name string, t, c Measure) Comparison {
	cmp := Comparison{Name: name, TrackOps: t, Ceiling: c, RatioOf: "trackops p99 latency / ceiling p99 latency (1.0 = as quick as the ceiling)"}
	if t.Unavailable == "" && c.Unavailable == "" && t.Latency != nil && c.Latency != nil {
		cmp.Ratio = ratio(t.Latency.P99, c.Latency.P99)
	}
	return cmp
}

// Config is what every scenario needs.
type Config struct {
	// Binary is the trackops executable to run as the process under test.
	Binary string
	// DatabaseURL names the PostgreSQL server; each scenario creates and
	// drops its own database there.
	DatabaseURL string
	// Phase is how long each measured phase runs.
	Phase time.Duration
	// Concurrency is the number of closed-loop workers of throughput phases.
	Concurrency int
	// Progress receives progress lines; nil prints nothing.
	Progress io.Writer
}

func (c *Config) defaults() {
	if c.Phase <= 0 {
		c.Phase = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Binary == "" {
		c.Binary, _ = os.Executable()
	}
}

func (c Config) logf(scenario, format string, args ...any) {
	fmt.Fprintf(c.Progress, "bench %-10s %s\n", scenario, fmt.Sprintf(format, args...))
}

// Run runs one scenario and returns its summary; failures are reported in
// the summary, not as an error, so `bench all` goes on to the next one.
func Run(ctx context.Context, cfg Config, scenario string) Result {
	cfg.defaults()
	start, steal0 := time.Now(), cpusteal.Read()
	var r Result
	switch scenario {
	case "api-create":
		r = runAPICreate(ctx, cfg)
	case "api-read":
		r = runAPIRead(ctx, cfg)
	case "relay":
		r = runRelay(ctx, cfg)
	case "cdc":
		r = runCDC(ctx, cfg)
	case "saga":
		r = runSaga(ctx, cfg)
	default:
		return Result{Scenario: scenario, Status: StatusError, Error: fmt.Sprintf("unknown scenario %q: want %s or all", scenario, strings.Join(Scenarios, ", "))}
	}
	r.Scenario = scenario
	if r.Status == "" {
		r.Status = StatusOK
	}
	if r.Comparisons == nil {
		r.Comparisons = []Comparison{}
	}
	r.PeakRSSMiB = round3(float64(r.PeakRSSBytes) / (1 << 20))
	r.ElapsedS = round3(time.Since(start).Seconds())
	r.StealPercent = cpusteal.Since(steal0)
	cfg.logf(scenario, "done in %.1fs: %s%s", r.ElapsedS, r.Status, stealNote(r.StealPercent))
	return r
}

// Document is what --out writes: every summary of one run.
type Document struct {
	GeneratedAt time.Time `json:"generated_at"`
	Machine     Machine   `json:"machine"`
	Results     []Result  `json:"results"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs        int    `json:"cpus"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	GoVersion   string `json:"go_version"`
	LoadAvgAtGo string `json:"load_average_at_start"`
	LoadAvgEnd  string `json:"load_average_at_end"`
	// StealPercent is the share of the machine's CPU time the hypervisor
	// gave to other guests over the whole run; absent where unknown.
	StealPercent *float64 `json:"cpu_steal_percent,omitempty"`

	stealAtStart cpusteal.Reading
}

// DescribeMachine reads what is known about this machine now, at the start
// of a run.
func DescribeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version()}
	m.LoadAvgAtGo = LoadAverage()
	m.stealAtStart = cpusteal.Read()
	return m
}

// End records the load average at the end of the run and the CPU steal
// over it.
func (m *Machine) End() {
	m.LoadAvgEnd = LoadAverage()
	m.StealPercent = cpusteal.Since(m.stealAtStart)
}

// LoadAverage is the 1, 5 and 15 minute load averages, when known.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// MarshalResult renders one summary as indented JSON.
func MarshalResult(r Result) []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return b
}

// closedLoop runs fn from workers goroutines back to back for d and measures
// the successful calls.
func closedLoop(ctx context.Context, workers int, d time.Duration, what string, fn loopFunc) Measure {
	var l loopStats
	l.run(ctx, workers, d, fn)
	return l.measure(what)
}

// side is one side of an interleaved comparison: what it measures and the
// call its workers repeat.
type side struct {
	what string
	fn   loopFunc
}

// interleaved measures the sides of a comparison in alternating rounds
// (a, b, a, b, ...) of d/rounds each, so a burst of load from elsewhere on a
// shared machine falls on every side alike instead of on whichever ran then.
func interleaved(ctx context.Context, workers int, d time.Duration, rounds int, sides ...side) []Measure {
	stats := make([]loopStats, len(sides))
	for range rounds {
		for i, s := range sides {
			stats[i].run(ctx, workers, d/time.Duration(rounds), s.fn)
		}
	}
	out := make([]Measure, len(sides))
	for i, s := range sides {
		out[i] = stats[i].measure(s.what)
	}
	return out
}

type loopFunc func(ctx context.Context, worker int, i int64) error

// loopStats accumulates the calls of one side over one or more rounds.
type loopStats struct {
	rec     Recorder
	errs    atomic.Int64
	seq     atomic.Int64
	sample  atomic.Value
	elapsed time.Duration
}

func (l *loopStats) run(parent context.Context, workers int, d time.Duration, fn loopFunc) {
	ctx, cancel := context.WithTimeout(parent, d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				err := fn(ctx, w, l.seq.Add(1))
				if ctx.Err() != nil {
					return // cut off by the deadline: neither a success nor a failure
				}
				if err != nil {
					l.errs.Add(1)
					l.sample.CompareAndSwap(nil, err.Error())
					continue
				}
				l.rec.Add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	l.elapsed += time.Since(start)
}

func (l *loopStats) measure(what string) Measure {
	lat := l.rec.Summary()
	m := Measure{What: what, Count: lat.Count, Errors: int(l.errs.Load()), Latency: &lat}
	if l.elapsed > 0 {
		m.Throughput = round3(float64(lat.Count) / l.elapsed.Seconds())
	}
	if s, ok := l.sample.Load().(string); ok {
		m.ErrorSample = truncate(s, 300)
	}
	return m
}

// paced calls fn rate times a second for d from a pool of goroutines, so a
// slow call does not delay the next arrival (open model).
func paced(ctx context.Context, rate int, d time.Duration, fn func(ctx context.Context, i int)) {
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	jobs := make(chan int, n)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range jobs {
				fn(ctx, i)
			}
		})
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		jobs <- i
	}
	close(jobs)
	wg.Wait()
}

func unavailable(reason string) Measure { return Measure{Unavailable: "unavailable: " + reason} }
