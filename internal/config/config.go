// Package config turns the process environment into one typed Config, with
// a section per component. It is the only package of TrackOps that reads
// the environment: components take the section they need (or plain values
// from it) through their constructors.
//
// Every setting has a default that works on a developer machine with the
// local PostgreSQL and Redis; production overrides them with TRACKOPS_*
// variables. A variable NAME may instead be given as NAME_FILE, the path of a
// file holding the value, so secrets can come from mounted files.
//
// Each section loads its own variables and validates its own values; Load
// reports every bad variable of every section at once, each message naming
// the variable and what it should look like.
package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"
)

// Event publishing strategies.
const (
	StrategyOutbox = "outbox"
	StrategyCDC    = "cdc"
)

// Config is the whole runtime configuration of a TrackOps process.
type Config struct {
	Database Database
	Redis    Redis
	Kafka    Kafka
	HTTP     HTTP
	Relay    Relay
	Consumer Consumer
	CDC      CDC
	DLQ      DLQ
	Limits   Limits
	Auth     Auth
	Sweeper  Sweeper
	Log      Log
	// Tracing is OpenTelemetry trace export (OTEL_* variables); off unless
	// an OTLP endpoint is set.
	Tracing Tracing
	// CLI are the settings of the one-shot commands.
	CLI CLI

	// EventStrategy is how order events reach Kafka: StrategyOutbox (the
	// relay publishes outbox rows) or StrategyCDC (the change stream builds
	// them from the WAL).
	EventStrategy string
	// DataDir holds the embedded broker's log and other local state.
	DataDir string
	// ShutdownTimeout is the graceful shutdown budget.
	ShutdownTimeout time.Duration
}

// Load reads the configuration from the environment.
func Load() (Config, error) {
	return LoadFrom(os.Getenv)
}

// LoadFrom reads the configuration through getenv, so tests can supply their
// own environment without touching the process's. The error joins every
// variable that could not be read or holds a value that cannot work.
func LoadFrom(getenv func(string) string) (Config, error) {
	e := &env{getenv: getenv}
	var c Config
	c.EventStrategy = strings.ToLower(e.str("TRACKOPS_EVENT_STRATEGY", StrategyOutbox))
	if c.EventStrategy == "debezium" {
		c.EventStrategy = StrategyCDC
	}
	c.DataDir = e.str("TRACKOPS_DATA_DIR", "./data")
	c.ShutdownTimeout = e.duration("TRACKOPS_SHUTDOWN_TIMEOUT", 20*time.Second)
	c.Database.load(e)
	c.Redis.load(e)
	c.Kafka.load(e)
	c.HTTP.load(e)
	c.Relay.load(e)
	c.Consumer.load(e)
	c.CDC.load(e)
	c.DLQ.load(e)
	c.Limits.load(e)
	c.Auth.load(e)
	c.Sweeper.load(e)
	c.Log.load(e)
	c.Tracing.load(e)
	c.CLI.load(e)
	// Values that did not parse kept their defaults, so validating the
	// rest still reports every other bad variable in the same error.
	if err := errors.Join(append(e.errs, c.Validate())...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports every setting that cannot work, each phrased so the
// operator knows what to change; errors.Join keeps them apart. Tests that
// adjust a loaded Config may call it again.
func (c Config) Validate() error {
	var errs []error
	switch c.EventStrategy {
	case StrategyOutbox, StrategyCDC:
	default:
		errs = append(errs, fmt.Errorf("TRACKOPS_EVENT_STRATEGY=%q: want outbox or cdc (debezium is an alias of cdc)", c.EventStrategy))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("TRACKOPS_SHUTDOWN_TIMEOUT must be positive, such as 20s"))
	}
	for _, s := range []interface{ validate() []error }{
		c.Database, c.Redis, c.Kafka, c.HTTP, c.Relay, c.Consumer, c.CDC, c.DLQ, c.Limits, c.Sweeper, c.Log, c.Tracing,
	} {
		errs = append(errs, s.validate()...)
	}
	return errors.Join(errs...)
}

// CLI are the settings of the one-shot commands.
type CLI struct {
	// Token is the bearer token `trackops bench` and `trackops loadgen`
	// send (TRACKOPS_TOKEN; their --token flag overrides it).
	Token string
	// Operator names who runs a command in the audit log: the user sudo
	// was run by, else the login name ("" when unknown).
	Operator string
}

func (c *CLI) load(e *env) {
	c.Token = e.str("TRACKOPS_TOKEN", "")
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if u := e.getenv(k); u != "" {
			c.Operator = u
			return
		}
	}
}

// env reads variables through getenv and collects what cannot be read.
type env struct {
	getenv func(string) string
	errs   []error
}

func (e *env) bad(format string, args ...any) { e.errs = append(e.errs, fmt.Errorf(format, args...)) }

// str returns NAME, or the contents of the file named by NAME_FILE.
func (e *env) str(name, def string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	if path := e.getenv(name + "_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s_FILE: %w", name, err))
			return def
		}
		return strings.TrimSpace(string(b))
	}
	return def
}

func (e *env) int(name string, def int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.bad("%s=%q: not a whole number", name, v)
		return def
	}
	return n
}

func (e *env) duration(name string, def time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.bad("%s=%q: not a duration such as 500ms or 2s", name, v)
		return def
	}
	return d
}

func (e *env) float(name string, def float64) float64 {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.bad("%s=%q: not a number", name, v)
		return def
	}
	return f
}

func (e *env) bool(name string) bool {
	switch v := strings.ToLower(e.str(name, "")); v {
	case "", "false", "0", "no", "off":
		return false
	case "true", "1", "yes", "on":
		return true
	default:
		e.bad("%s=%q: want true or false", name, v)
		return false
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func defaultLogFormat() string {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return "text"
	}
	return "json"
}
