package app

import (
	"context"

	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/lease"
	"github.com/trackops/trackops/internal/order"
)

// buildSweeper runs the pending-order sweeper of the orders role: every
// process of the role competes for the lease, and the one holding it sweeps
// orders PENDING past TRACKOPS_SAGA_PENDING_TIMEOUT. Its metrics go on the
// registry, its state into /health (component "sweeper", shown on the
// console's overview).
func (a *App) buildSweeper() error {
	if !a.roles.Has(RoleOrders) || a.orders == nil {
		return nil
	}
	log := a.log.With("component", "order-sweeper")
	// Re-driving a reservation is inventory's rule, run here on the same
	// database whichever process holds the inventory role.
	stock := inventory.NewService(a.pool, inventory.WithCache(inventory.NewRedisCache(a.stores)), inventory.WithMetrics(a.metrics.inventory),
		inventory.WithRelayWake(a.relayWake()))
	sw := order.NewSweeper(a.orders, stock, order.SweeperConfig{Timeout: a.cfg.Sweeper.PendingTimeout, Logger: log})
	ls := lease.New(a.leaseURL(), order.SweeperLease, lease.Options{
		Identity: leaseIdentity(),
		OnChange: sw.SetActive,
		Logger:   log,
	})
	a.leases = append(a.leases, ls)
	a.workers = append(a.workers, worker{name: "order-sweeper", run: func(ctx context.Context) error {
		return ls.Run(ctx, sw.Run)
	}})
	a.health.Add(health.Func{ComponentName: "sweeper", Fn: func(context.Context) health.Component {
		st := sw.Status()
		return health.Component{Status: health.Up, Details: map[string]any{
			"active": st.Active, "timeout": st.TimeoutText, "lastPass": st.LastPass, "lastError": st.LastError,
			"totals": st.Totals, "lease": ls.Status(),
		}}
	}})
	return nil
}
