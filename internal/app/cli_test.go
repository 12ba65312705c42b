package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/runinfo"
)

// runMain runs the CLI in-process.
func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVersionFlagsAndCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		code, out, errOut := runMain(args...)
		if code != 0 || !strings.HasPrefix(out, "trackops "+Version+" (go") {
			t.Errorf("trackops %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// Every command answers -h and --help with its usage (exit 0), and
// `help COMMAND` prints the same.
func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range Commands() {
		for _, args := range [][]string{{c.Name, "-h"}, {c.Name, "--help"}, {"help", c.Name}} {
			code, out, errOut := runMain(args...)
			if code != 0 || !strings.Contains(out, "usage: "+c.Usage) {
				t.Errorf("trackops %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		if code, out, _ := runMain(args...); code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("trackops %v: exit %d, stdout %q", args, code, out)
		}
	}
}

func TestCommandLineMistakesExit2(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "Usage: trackops <command>"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--frobnicate"}, `unknown flag "--frobnicate"`},
		{[]string{"help", "foo"}, `unknown help topic "foo"`},
		{[]string{"help", "run", "migrate"}, "help takes one topic"},
		{[]string{"completion", "fish"}, `unknown shell "fish"`},
		{[]string{"apikey", "create", "--name", "x", "--role", "god"}, `--role "god" is not a role: want viewer, operator or admin`},
		{[]string{"apikey", "create", "--name", "x"}, "--role is required: viewer, operator or admin"},
		{[]string{"user", "create", "--role", "admin"}, "--username is required"},
	}
	for _, tt := range tests {
		code, out, errOut := runMain(tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("trackops %v: exit %d, stderr %q; want exit 2 and %q (stdout %q)", tt.args, code, errOut, tt.want, out)
		}
	}
}

// A flag the command does not know prints the error and the usage once,
// not the flag package's own listing as well.
func TestBadFlagPrintsTheUsageOnce(t *testing.T) {
	code, _, errOut := runMain("dlq", "list", "--bogus")
	if code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if n := strings.Count(errOut, "usage:") + strings.Count(errOut, "Usage"); n != 1 {
		t.Fatalf("usage printed %d times:\n%s", n, errOut)
	}
	if !strings.HasPrefix(errOut, "trackops dlq: flag provided but not defined: -bogus\n") {
		t.Fatalf("stderr %q", errOut)
	}
}

func TestBashCompletionCompletes(t *testing.T) {
	code, script, errOut := runMain("completion", "bash")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	complete := func(words ...string) string {
		t.Helper()
		// The script is loaded into a real bash, which is then asked what
		// it would offer for words, the last being the word being typed.
		prog := script + "\nCOMP_WORDS=(" + strings.Join(quoteAll(words), " ") + ")\nCOMP_CWORD=" +
			strconv.Itoa(len(words)-1) + "\n_trackops\necho \"${COMPREPLY[*]}\"\n"
		out, err := exec.Command("bash", "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"trackops", "mi"}, "migrate"},
		{[]string{"trackops", "dlq", "re"}, "replay"},
		{[]string{"trackops", "dlq", "replay", "--dr"}, "--dry-run"},
		{[]string{"trackops", "completion", ""}, "bash zsh"},
		{[]string{"trackops", "--ver"}, "--version"},
		{[]string{"trackops", "help", "cd"}, "cdc"},
	} {
		if got := complete(tt.words...); got != tt.want {
			t.Errorf("completing %q: %q, want %q", tt.words, got, tt.want)
		}
	}
}

func TestZshCompletionNamesEveryCommand(t *testing.T) {
	code, script, errOut := runMain("completion", "zsh")
	if code != 0 || !strings.HasPrefix(script, "#compdef trackops\n") || !strings.Contains(script, "compdef _trackops trackops") {
		t.Fatalf("exit %d, stderr %q, script:\n%s", code, errOut, script)
	}
	for _, c := range Commands() {
		if !strings.Contains(script, "'"+c.Name+":") || !strings.Contains(script, "        "+c.Name+") args=") {
			t.Errorf("zsh completion lacks command %s", c.Name)
		}
	}
}

// configOn is the default configuration with db as the database.
func configOn(t testing.TB, db *postgrestest.Database) config.Config {
	t.Helper()
	cfg, err := config.LoadFrom(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.URL = db.URL
	return cfg
}

// cdcStatus runs `cdc status` with args under cfg and returns its output.
func cdcStatus(t *testing.T, cfg config.Config, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := cdcCommand(context.Background(), &Env{Config: cfg, Stdout: &out, Stderr: &out}, append([]string{"status"}, args...)); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// `cdc status` reports the strategy the running platform recorded, not the
// one of the shell it runs in.
func TestCDCStatusReportsTheRunningPlatformsStrategy(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	cfg := configOn(t, db)
	if got := cdcStatus(t, cfg); !strings.HasPrefix(got, "strategy: outbox (no platform has run on this database") {
		t.Fatalf("before any run: %q", got)
	}
	if err := runinfo.Record(ctx, db.Pool, runinfo.EventStrategy, "cdc", "test"); err != nil {
		t.Fatal(err)
	}
	got := cdcStatus(t, cfg)
	if !strings.HasPrefix(got, "strategy: cdc (recorded by ") || !strings.Contains(got, "this shell's TRACKOPS_EVENT_STRATEGY is outbox") {
		t.Fatalf("with the platform in cdc mode and this shell in outbox: %q", got)
	}
}

// `cdc status` shows the incremental snapshots the connectors' offsets
// record, in text and JSON, without a running connector.
func TestCDCStatusShowsIncrementalSnapshotProgress(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	cfg := configOn(t, db)
	state := `{"incremental_snapshot_collections": [{"incremental_snapshot_collections_id": "public.orders"},
		{"incremental_snapshot_collections_id": "public.order_items"}], "incremental_snapshot_primary_key": ["2048"],
		"incremental_snapshot_correlation_id": "ad-hoc-1", "tables_total": 2, "chunks": 2, "table_rows_read": 2048,
		"table_rows_estimate": 10000, "rows_read": 2048}`
	if _, err := db.Pool.Exec(ctx, `INSERT INTO cdc_offsets (name, slot_name, snapshot_completed, incremental_snapshot)
		VALUES ('c1', 's1', true, $1), ('c2', 's2', true, '{"incremental_snapshot_collections": [], "signal_lsn": 5}')`, state); err != nil {
		t.Fatal(err)
	}
	text := cdcStatus(t, cfg)
	line := ""
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "c1 ") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if want := "c1 running public.orders 0/2 2048 of ~10000 2 2048 ad-hoc-1"; line != want || strings.Contains(text, "\nc2 ") {
		t.Fatalf("text output:\n%s\nwant the line %q and no line for c2 (no snapshot running)", text, want)
	}
	var rep struct {
		Snapshots []struct {
			Connector    string   `json:"connector"`
			State        string   `json:"state"`
			CurrentTable string   `json:"current_table"`
			Tables       []string `json:"tables"`
			RowsRead     int64    `json:"table_rows_read"`
			Estimate     int64    `json:"table_rows_estimate"`
		} `json:"incremental_snapshots"`
	}
	if err := json.Unmarshal([]byte(cdcStatus(t, cfg, "--json")), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Snapshots) != 1 || rep.Snapshots[0].Connector != "c1" || rep.Snapshots[0].State != "running" ||
		fmt.Sprint(rep.Snapshots[0].Tables) != "[public.orders public.order_items]" || rep.Snapshots[0].RowsRead != 2048 || rep.Snapshots[0].Estimate != 10000 {
		t.Fatalf("json: %+v", rep)
	}
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + w + "'"
	}
	return out
}

// `trackops verify` reports its progress on stderr, as plain lines when
// stderr is not a terminal, and the report on stdout.
func TestVerifyShowsProgress(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	cfg := configOn(t, db)
	var out, errOut bytes.Buffer
	if err := verifyCommand(context.Background(), &Env{Config: cfg, Stdout: &out, Stderr: &errOut}, nil); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	last := strings.TrimSpace(errOut.String())
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if !strings.HasPrefix(last, "verify: done 6/6 (") || !strings.Contains(out.String(), "PASS") {
		t.Fatalf("stderr %q, stdout %q", errOut.String(), out.String())
	}
}
