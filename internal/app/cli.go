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
	"slices"
	"strings"
	"syscall"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/logging"
)

// Command is one `trackops` subcommand.
type Command struct {
	Name    string
	Summary string
	// Usage is the synopsis and flags, as `trackops help NAME` prints it;
	// shell completion offers the --flags it names.
	Usage string
	// Args are the words completion offers as the first argument
	// (subcommands such as dlq's list and replay, or bench's scenarios).
	Args []string
	// NoConfig commands run without reading the environment's
	// configuration, so they work even when it is broken.
	NoConfig bool
	Run      func(ctx context.Context, env *Env, args []string) error
}

// Env is what a command runs with: configuration, output streams, stdin.
type Env struct {
	Config config.Config
	Stdout io.Writer
	Stderr io.Writer
	Stdin  io.Reader
}

// ErrUsage marks a command-line mistake; the CLI prints the usage with it
// and exits 2.
var ErrUsage = errors.New("usage")

// Commands are every `trackops` subcommand, in the order help lists them.
// The list is written out here, not filled by init functions, so one place
// shows the whole CLI.
func Commands() []*Command {
	return []*Command{
		runCmd(),
		migrateCmd(),
		apikeyCmd(),
		userCmd(),
		dlqCmd(),
		cdcCmd(),
		verifyCmd(),
		benchCmd(),
		loadgenCmd(),
		healthcheckCmd(),
		completionCmd(),
		versionCmd(),
		helpCmd(),
	}
}

func lookup(cmds []*Command, name string) *Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Main runs the CLI with args (without the program name) and returns the
// process exit code: 0 on success, 1 when the work failed (start-up
// failures and misconfiguration included), 2 for a command-line mistake.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := Commands()
	if len(args) == 0 {
		printHelp(stderr, cmds)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help":
		args = append([]string{"help"}, args[1:]...)
	case "-v", "--version", "-version":
		args = append([]string{"version"}, args[1:]...)
	}
	c := lookup(cmds, args[0])
	if c == nil {
		what := "command"
		if strings.HasPrefix(args[0], "-") {
			what = "flag"
		}
		fmt.Fprintf(stderr, "trackops: unknown %s %q; run 'trackops help' for the commands\n", what, args[0])
		return 2
	}
	if slices.ContainsFunc(args[1:], isHelp) {
		printCommandHelp(stdout, c)
		return 0
	}
	env := &Env{Stdout: stdout, Stderr: stderr, Stdin: stdin}
	if !c.NoConfig {
		cfg, err := config.Load()
		if err != nil {
			fmt.Fprintf(stderr, "trackops %s: %s\n", c.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
			return 1
		}
		env.Config = cfg
		// Libraries that log on their own (go-redis, net/http, goose)
		// write through the same handler as TrackOps.
		logging.RouteLibraries(logging.New(stderr, cfg.Log.Format, cfg.Log.Level))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx, env, args[1:]); err != nil {
		if errors.Is(err, ErrUsage) {
			msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
			fmt.Fprintf(stderr, "trackops %s: %s\nusage: %s\n", c.Name, oneLine(msg), c.Usage)
			return 2
		}
		fmt.Fprintf(stderr, "trackops %s: %s\n", c.Name, oneLine(err.Error()))
		return 1
	}
	return 0
}

func isHelp(a string) bool { return a == "-h" || a == "--help" || a == "-help" }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printHelp(w io.Writer, cmds []*Command) {
	fmt.Fprintf(w, "TrackOps %s — orders, inventory, outbox and change data capture on PostgreSQL, Kafka and Redis.\n\nUsage: trackops <command> [flags]\n\nCommands:\n", Version)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nConfiguration comes from TRACKOPS_* environment variables; see the README.\n"+
		"Run 'trackops help <command>' or 'trackops <command> -h' for a command's flags; 'trackops --version' for the version.")
}

func printCommandHelp(w io.Writer, c *Command) {
	fmt.Fprintf(w, "%s\n\nusage: %s\n", c.Summary, c.Usage)
}

func helpCmd() *Command {
	return &Command{Name: "help", Summary: "show the commands, or one command's usage",
		Usage: "trackops help [command]", NoConfig: true, Run: helpCommand}
}

// helpCommand is `trackops help [topic]`; an unknown topic is a mistake,
// as an unknown command is.
func helpCommand(_ context.Context, env *Env, args []string) error {
	cmds := Commands()
	switch len(args) {
	case 0:
		printHelp(env.Stdout, cmds)
		return nil
	case 1:
		if c := lookup(cmds, args[0]); c != nil {
			printCommandHelp(env.Stdout, c)
			return nil
		}
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name
		}
		return fmt.Errorf("%w: unknown help topic %q: want one of %s", ErrUsage, args[0], strings.Join(names, ", "))
	}
	return fmt.Errorf("%w: help takes one topic, got %d", ErrUsage, len(args))
}

func versionCmd() *Command {
	return &Command{Name: "version", Summary: "print the version (also trackops --version, -v)",
		Usage: "trackops version", NoConfig: true, Run: func(_ context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
			}
			fmt.Fprintf(env.Stdout, "trackops %s (%s)\n", Version, runtime.Version())
			return nil
		}}
}

func runCmd() *Command {
	return &Command{Name: "run", Summary: "run the platform (all roles, or --roles)",
		Usage: "trackops run [--roles orders,inventory,relay,cdc,console]", Run: runCommand}
}

func migrateCmd() *Command {
	return &Command{Name: "migrate", Summary: "create the database if missing and apply migrations",
		Usage: "trackops migrate", Run: migrateCommand}
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints nothing itself: Main prints the error and the usage, once.
func newFlagSet(name string, _ io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
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
	log := logging.New(env.Stderr, env.Config.Log.Format, env.Config.Log.Level)
	logging.RouteLibraries(log)
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
