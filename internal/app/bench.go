package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/trackops/trackops/internal/bench"
	"github.com/trackops/trackops/internal/progress"
	"github.com/trackops/trackops/internal/tlsconfig"
)

func loadgenCmd() *Command {
	return &Command{Name: "loadgen", Summary: "send constant-rate API load and summarise latency and errors",
		Usage: "trackops loadgen [--target http://127.0.0.1:8080] [--rate 100] [--duration 30s] [--token T | TRACKOPS_TOKEN]\n" +
			"                 [--skus 100] [--stock 1000000] [--mix create=60,read=30,status=5,cancel=5] [--json]",
		Run: loadgenCommand}
}

func benchCmd() *Command {
	return &Command{Name: "bench", Args: append(append([]string{}, bench.Scenarios...), "all"), Summary: "run benchmark scenarios, each against a ceiling measured in the same run",
		Usage: "trackops bench SCENARIO [--out FILE] [--phase 10s] [--concurrency 16] [--binary PATH]\n" +
			"trackops bench SCENARIO --sweep [--rates 100,200,500,1000,2000,5000] [--step 10s] [--out FILE]\n" +
			"scenarios: " + strings.Join(bench.Scenarios, ", ") + ", all; with --sweep: " + strings.Join(bench.SweepScenarios, ", ") + ", all\n" +
			"Each scenario creates its own database on TRACKOPS_DATABASE_URL's server (dropped after) and runs\n" +
			"this binary as the TrackOps process on free ports with its embedded broker.",
		Run: benchCommand}
}

func verifyCmd() *Command {
	return &Command{Name: "verify", Summary: "check the database's invariants; exit 1 listing offending rows",
		Usage: "trackops verify [--kafka] [--outbox-bound 1m] [--pending-bound 5m] [--allow-failed] [--json]\n" +
			"Checks 0 <= reserved <= on_hand, reservations sum to reserved, order histories, outbox drained and\n" +
			"no failed outbox rows, no order PENDING past the bound, on TRACKOPS_DATABASE_URL. With --kafka it also\n" +
			"reads the topics (plain consumer, start to the high watermarks) and checks every order's events, by\n" +
			"event id, and under the cdc strategy the change records, against the database.",
		Run: verifyCommand}
}

func loadgenCommand(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("loadgen", env.Stderr)
	target := fs.String("target", "http://"+env.Config.HTTP.Addr, "base URL of the TrackOps API")
	rate := fs.Int("rate", 100, "requests per second (constant, open model)")
	duration := fs.Duration("duration", 30*time.Second, "how long to send requests")
	token := fs.String("token", env.Config.CLI.Token, "bearer token (default $TRACKOPS_TOKEN)")
	skus := fs.Int("skus", 100, "how many SKUs orders are spread over")
	stock := fs.Int64("stock", 1_000_000, "on_hand set on each SKU before the run through the inventory API (0: leave stock alone)")
	mixFlag := fs.String("mix", bench.DefaultMix.String(), "operation weights")
	asJSON := fs.Bool("json", false, "print the summary as JSON on stdout")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	mix, err := bench.ParseMix(*mixFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if *rate <= 0 || *duration <= 0 || *skus <= 0 {
		return fmt.Errorf("%w: --rate, --duration and --skus must be positive", ErrUsage)
	}
	sum, err := bench.RunLoad(ctx, bench.LoadConfig{Target: *target, Token: *token, Rate: *rate, Duration: *duration,
		SKUs: *skus, Stock: *stock, Mix: mix, Progress: env.Stderr})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	sum.Write(env.Stdout)
	return nil
}

func benchCommand(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: name a scenario", ErrUsage)
	}
	scenario, args := args[0], args[1:]
	fs := newFlagSet("bench", env.Stderr)
	out := fs.String("out", "", "also write every summary as one JSON document to this file")
	phase := fs.Duration("phase", 10*time.Second, "length of each measured phase")
	concurrency := fs.Int("concurrency", 16, "closed-loop workers of the throughput phases")
	binaryFlag := fs.String("binary", "", "trackops binary to run as the process under test (default: this one)")
	sweep := fs.Bool("sweep", false, "step the offered rate until the path saturates (saga, relay, cdc)")
	ratesFlag := fs.String("rates", joinInts(bench.DefaultSweepRates), "offered rates of a sweep, per second")
	step := fs.Duration("step", 10*time.Second, "how long a sweep holds each rate")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	known := bench.Scenarios
	if *sweep {
		known = bench.SweepScenarios
	}
	scenarios := []string{scenario}
	if scenario == "all" {
		scenarios = known
	}
	for _, s := range scenarios {
		if !contains(known, s) {
			return fmt.Errorf("%w: unknown scenario %q: want %s or all", ErrUsage, s, strings.Join(known, ", "))
		}
	}
	binary := *binaryFlag
	if binary == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the trackops binary: %w", err)
		}
		binary = self
	}
	// The scenarios' own lines go through the tracker, so on a terminal the
	// bar stays below them.
	prog := progress.New(env.Stderr, "bench", int64(len(scenarios)))
	cfg := bench.Config{Binary: binary, DatabaseURL: env.Config.Database.URL,
		Phase: *phase, Concurrency: *concurrency, Progress: prog.Writer()}
	if *sweep {
		rates, err := parseRates(*ratesFlag)
		if err != nil || *step <= 0 {
			return fmt.Errorf("%w: --rates wants rising whole rates such as 100,200,500 and --step a positive duration", ErrUsage)
		}
		return sweepCommand(ctx, env, cfg, scenarios, rates, *step, *out)
	}
	doc := bench.Document{GeneratedAt: time.Now().UTC(), Machine: bench.DescribeMachine()}
	failures := 0
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		r := bench.Run(ctx, cfg, s)
		if r.Status == bench.StatusError {
			failures++
		}
		prog.Step(s + " " + r.Status)
		doc.Results = append(doc.Results, r)
		fmt.Fprintf(env.Stdout, "%s\n", bench.MarshalResult(r))
	}
	prog.Done()
	doc.Machine.End()
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		b, _ := json.MarshalIndent(doc, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "bench: wrote %s\n", *out)
	}
	if failures > 0 {
		return fmt.Errorf("%d of %d scenarios failed; see their \"error\" fields", failures, len(doc.Results))
	}
	return ctx.Err()
}

// sweepCommand runs bench --sweep: each scenario at rising offered rates.
func sweepCommand(ctx context.Context, env *Env, cfg bench.Config, scenarios []string, rates []int, step time.Duration, out string) error {
	doc := bench.SweepDocument{GeneratedAt: time.Now().UTC(), Machine: bench.DescribeMachine()}
	failures := 0
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		sw := bench.RunSweep(ctx, cfg, s, rates, step)
		if sw.Status == bench.StatusError {
			failures++
		}
		doc.Sweeps = append(doc.Sweeps, sw)
		b, _ := json.MarshalIndent(sw, "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", b)
	}
	doc.Machine.End()
	if out != "" {
		if err := writeJSON(out, doc); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "bench: wrote %s\n", out)
	}
	if failures > 0 {
		return fmt.Errorf("%d of %d sweeps failed; see their \"error\" fields", failures, len(doc.Sweeps))
	}
	return ctx.Err()
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("rates %q", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// errInvariants makes verify exit 1 after the report was printed.
type errInvariants struct{ failed int }

func (e errInvariants) Error() string {
	return fmt.Sprintf("%d invariant checks failed; the offending rows are listed above", e.failed)
}

func verifyCommand(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("verify", env.Stderr)
	outboxBound := fs.Duration("outbox-bound", time.Minute, "oldest an unpublished outbox row may be")
	pendingBound := fs.Duration("pending-bound", env.Config.Sweeper.PendingTimeout, "longest an order may stay PENDING")
	allowFailed := fs.Bool("allow-failed", false, "accept outbox rows the relay gave up on")
	withKafka := fs.Bool("kafka", false, "also read the topics (no consumer group, start to high watermark) and check them against the database")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	pool, err := connectDatabase(ctx, env.Config)
	if err != nil {
		return err
	}
	defer pool.Close()
	prog := progress.New(env.Stderr, "verify", 0)
	opts := bench.VerifyOptions{OutboxBound: *outboxBound, PendingBound: *pendingBound, AllowFailed: *allowFailed, Progress: prog}
	if *withKafka {
		security, err := tlsconfig.Kafka(env.Config.Kafka.Security)
		if err != nil {
			return err
		}
		opts.Kafka = &bench.KafkaVerify{Brokers: env.Config.Kafka.Bootstrap(), Extra: security, Strategy: env.Config.EventStrategy}
	}
	rep, err := bench.Verify(ctx, pool, opts)
	prog.Done()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		rep.Write(env.Stdout)
	}
	if n := rep.Failed(); n > 0 {
		return errInvariants{failed: n}
	}
	return nil
}
