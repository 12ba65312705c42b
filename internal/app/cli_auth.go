package app

import (
	"context"
	"fmt"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

func apikeyCmd() *Command {
	return &Command{Name: "apikey", Summary: "create an API key (printed once, as the last line)",
		Usage: "trackops apikey create --name NAME --role viewer|operator|admin", Args: []string{"create"}, Run: apikeyCommand}
}

func userCmd() *Command {
	return &Command{Name: "user", Summary: "create a user (password read from stdin)",
		Usage: "echo PASSWORD | trackops user create --username U --role viewer|operator|admin", Args: []string{"create"}, Run: userCommand}
}

// withAuth opens what the auth service needs for a one-shot command.
func withAuth(ctx context.Context, env *Env, fn func(*auth.Service) error) error {
	if err := Migrate(ctx, env.Config); err != nil {
		return err
	}
	pool, err := connectDatabase(ctx, env.Config)
	if err != nil {
		return err
	}
	defer pool.Close()
	stores, err := cache.Open(env.Config.Redis.URL, cache.Options{})
	if err != nil {
		return err
	}
	defer stores.Close()
	svc := auth.NewService(pool, stores.Sessions, auth.Options{})
	defer svc.Close()
	return fn(svc)
}

func subcommand(args []string, want string) ([]string, error) {
	if len(args) == 0 || args[0] != want {
		return nil, fmt.Errorf("%w: expected %q", ErrUsage, want)
	}
	return args[1:], nil
}

func apikeyCommand(ctx context.Context, env *Env, args []string) error {
	rest, err := subcommand(args, "create")
	if err != nil {
		return err
	}
	fs := newFlagSet("apikey create", env.Stderr)
	name := fs.String("name", "", "a name for the key, e.g. the service using it")
	roleFlag := fs.String("role", "", "viewer, operator or admin")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	role, err := requiredRole(*roleFlag)
	if err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: --name is required (a name for the key, e.g. the service using it)", ErrUsage)
	}
	return withAuth(ctx, env, func(svc *auth.Service) error {
		key, err := svc.CreateAPIKey(ctx, *name, role)
		if err != nil {
			return validation.Describe(err)
		}
		fmt.Fprintf(env.Stderr, "API key %q with role %s created; it is shown only once:\n", *name, role)
		fmt.Fprintln(env.Stdout, key)
		return nil
	})
}

func userCommand(ctx context.Context, env *Env, args []string) error {
	rest, err := subcommand(args, "create")
	if err != nil {
		return err
	}
	fs := newFlagSet("user create", env.Stderr)
	username := fs.String("username", "", "login name")
	roleFlag := fs.String("role", "", "viewer, operator or admin")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	role, err := requiredRole(*roleFlag)
	if err != nil {
		return err
	}
	if *username == "" {
		return fmt.Errorf("%w: --username is required", ErrUsage)
	}
	password, err := auth.ReadPassword(env.Stdin)
	if err != nil {
		return err
	}
	return withAuth(ctx, env, func(svc *auth.Service) error {
		u, err := svc.CreateUser(ctx, *username, password, role)
		if err != nil {
			return validation.Describe(err)
		}
		fmt.Fprintf(env.Stdout, "user %s created with role %s\n", u.Username, role)
		return nil
	})
}

// requiredRole parses --role, naming the valid roles when it is missing or
// unknown.
func requiredRole(s string) (httpapi.Role, error) {
	if s == "" {
		return "", fmt.Errorf("%w: --role is required: viewer, operator or admin", ErrUsage)
	}
	role, err := httpapi.ParseRole(s)
	if err != nil {
		return "", fmt.Errorf("%w: --role %q is not a role: want viewer, operator or admin", ErrUsage, s)
	}
	return role, nil
}
