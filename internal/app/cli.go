package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"syscall"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/logging"
)

// Command is one `trackops` subcommand.
type Command struct {
	Name    string
	Summary string
	Usage   string
	Run     func(ctx context.Context, env *Env, args []string) error
}

// Env is what a command runs with: configuration, output streams, stdin.
type Env struct {
	Config config.Config
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
}

// ErrUsage marks a command-line mistake; the CLI prints the usage with it.
var ErrUsage = errors.New("usage")

var commands = map[string]*Command{}

// Register adds a subcommand; parts of TrackOps register theirs from this
// package's files.
func Register(c *Command) { commands[c.Name] = c }

func init() {
	Register(&Command{Name: "run", Summary: "run the platform (all roles, or --roles)",
		Usage: "trackops run [--roles orders,inventory,relay,cdc,console]", Run: runCommand})
	Register(&Command{Name: "migrate", Summary: "create the database if missing and apply migrations",
		Usage: "trackops migrate", Run: migrateCommand})
	Register(&Command{Name: "version", Summary: "print the version", Usage: "trackops version",
		Run: func(_ context.Context, env *Env, _ []string) error {
			fmt.Fprintf(env.Stdout, "trackops %s (%s)\n", Version, runtime.Version())
			return nil
		}})
}

// Main runs the CLI with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || isHelp(args[0]) || args[0] == "help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fmt.Fprintf(stdout, "%s\n\n%s\n", c.Summary, c.Usage)
				return 0
			}
		}
		printHelp(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "trackops: unknown command %q; run 'trackops help'\n", args[0])
		return 2
	}
	for _, a := range args[1:] {
		if isHelp(a) {
			fmt.Fprintf(stdout, "%s\n\n%s\n", c.Summary, c.Usage)
			return 0
		}
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "trackops: configuration: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Config: cfg, Stdout: stdout, Stderr: stderr, Stdin: stdin}
	if err := c.Run(ctx, env, args[1:]); err != nil {
		if errors.Is(err, ErrUsage) || errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "trackops %s: %v\nusage: %s\n", c.Name, err, c.Usage)
			return 2
		}
		fmt.Fprintf(stderr, "trackops %s: %s\n", c.Name, oneLine(err.Error()))
		return 1
	}
	return 0
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "TrackOps %s — orders, inventory, outbox and change data capture on PostgreSQL, Kafka and Redis.\n\nUsage: trackops <command> [flags]\n\nCommands:\n", Version)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w, "\nConfiguration comes from TRACKOPS_* environment variables; see the README.\nRun 'trackops help <command>' or 'trackops <command> -h' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func runCommand(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("run", env.Stderr)
	rolesFlag := fs.String("roles", "all", "comma list of roles: orders,inventory,relay,cdc,console")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	roles, err := ParseRoles(*rolesFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	log := logging.New(env.Stderr, env.Config.LogFormat, env.Config.LogLevel)
	a, err := New(ctx, env.Config, roles, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func migrateCommand(ctx context.Context, env *Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	if err := Migrate(ctx, env.Config); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "migrations applied")
	return nil
}
