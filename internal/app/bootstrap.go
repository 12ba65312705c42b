package app

import (
	"context"
	"fmt"

	"github.com/trackops/trackops/internal/auth"
)

// bootstrapAdminKey installs TRACKOPS_BOOTSTRAP_ADMIN_KEY (usually given as
// TRACKOPS_BOOTSTRAP_ADMIN_KEY_FILE, a mounted secret) as the first admin
// key when the deployment has none, so a stack started by an orchestrator
// can be administered without a shell. Every process does this on start;
// the auth service makes concurrent starts safe.
func (a *App) bootstrapAdminKey(ctx context.Context) error {
	if a.cfg.Auth.BootstrapAdminKey == "" {
		return nil
	}
	out, err := a.security.auth.EnsureBootstrapAdminKey(ctx, a.cfg.Auth.BootstrapAdminKey)
	if err != nil {
		return fmt.Errorf("TRACKOPS_BOOTSTRAP_ADMIN_KEY: %w", err)
	}
	switch out {
	case auth.BootstrapCreated:
		a.log.Info("bootstrap admin API key installed", "name", auth.BootstrapKeyName)
	case auth.BootstrapKeyRevoked:
		a.log.Warn("no admin API key is active and the bootstrap key was revoked; it stays revoked (create a key with `trackops apikey create --role admin`)")
	}
	return nil
}
