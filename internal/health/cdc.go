package health

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/outbox"
)

// CDCStatus is what the CDC indicator needs from the connector.
type CDCStatus struct {
	// Connector is the connector's name, e.g. trackops-orders-connector.
	Connector string
	// State is Kafka Connect's connector state: RUNNING, PAUSED, FAILED,
	// UNASSIGNED or RESTARTING.
	State string
	// LagSeconds is how far the newest published change trails its commit.
	LagSeconds float64
	// Topics are the change topics the connector writes to.
	Topics []string
	// Error is the last failure's message, if any.
	Error string
}

// CDCStatusSource reports the connector's state; the cdc package's Status
// plugs in through CDCStatusFunc.
type CDCStatusSource interface {
	CDCStatus(ctx context.Context) (CDCStatus, error)
}

// CDCStatusFunc adapts a function to CDCStatusSource.
type CDCStatusFunc func(ctx context.Context) (CDCStatus, error)

// CDCStatus implements CDCStatusSource.
func (f CDCStatusFunc) CDCStatus(ctx context.Context) (CDCStatus, error) { return f(ctx) }

// CDCConfig describes the event pipeline the CDC indicator reports on.
type CDCConfig struct {
	// Strategy is "outbox" or "cdc".
	Strategy string
	// SlotName is the replication slot of the built-in connector
	// (debezium_orders by default); its activity and lag are read from
	// pg_replication_slots directly.
	SlotName string
	// Source is the running connector, nil when this process runs none.
	Source CDCStatusSource
	// ChangeTopics are the CDC topics, reported when Source gives none.
	ChangeTopics []string
}

// DefaultSlotName and DefaultChangeTopics are the built-in connector's.
var (
	DefaultSlotName     = "debezium_orders"
	DefaultChangeTopics = []string{"orders.orders", "orders.order_items", "orders.order_status_history"}
)

// CDC reports the event pipeline, as the seed's Debezium indicator did.
// Under the outbox strategy it is UP with the outbox's backlog. Under cdc it
// reports the connector state and the slot: active, lag bytes (WAL not yet
// confirmed by the connector) and retained WAL bytes. It is DOWN when the
// connector failed or its slot is missing, which makes the platform
// DEGRADED, not DOWN: orders are still taken and the slot keeps the changes.
func CDC(pool *pgxpool.Pool, cfg CDCConfig) Indicator {
	if cfg.SlotName == "" {
		cfg.SlotName = DefaultSlotName
	}
	if cfg.ChangeTopics == nil {
		cfg.ChangeTopics = DefaultChangeTopics
	}
	return Func{ComponentName: "cdc", IsCritical: false, Fn: func(ctx context.Context) Component {
		details := map[string]any{"strategy": cfg.Strategy, "applicationTopics": events.AllTypes}
		status := Up
		// The relay runs under both strategies (inventory events always use
		// the outbox), so its backlog is always of interest.
		if st, err := outbox.ReadStats(ctx, pool); err == nil {
			details["outbox"] = map[string]any{"pending": st.Pending, "failed": st.Failed,
				"retrying": st.RetryingEvents, "oldestPendingAgeSeconds": st.OldestAgeSecs}
		} else {
			details["outbox"] = map[string]any{"error": err.Error()}
			status = Down
		}
		if cfg.Strategy != "cdc" {
			return Component{Status: status, Details: details}
		}
		details["cdcTopics"] = cfg.ChangeTopics
		slot, err := readSlot(ctx, pool, cfg.SlotName)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			details["slot"] = map[string]any{"name": cfg.SlotName, "exists": false}
			status = Down
		case err != nil:
			details["slot"] = map[string]any{"name": cfg.SlotName, "error": err.Error()}
			status = Down
		default:
			details["slot"] = slot
		}
		if cfg.Source == nil {
			details["connector"] = map[string]any{"state": "NOT_RUNNING_IN_THIS_PROCESS"}
			if status == Up {
				status = Unknown
			}
			return Component{Status: status, Details: details}
		}
		cs, err := cfg.Source.CDCStatus(ctx)
		if err != nil {
			details["connector"] = map[string]any{"error": err.Error()}
			return Component{Status: Down, Details: details}
		}
		conn := map[string]any{"name": cs.Connector, "state": cs.State, "lagSeconds": cs.LagSeconds}
		if cs.Error != "" {
			conn["error"] = cs.Error
		}
		details["connector"] = conn
		if len(cs.Topics) > 0 {
			details["cdcTopics"] = cs.Topics
		}
		if cs.State == "FAILED" || cs.State == "UNASSIGNED" {
			status = Down
		}
		return Component{Status: status, Details: details}
	}}
}

// readSlot reads a replication slot's state and how much WAL it holds back.
func readSlot(ctx context.Context, pool *pgxpool.Pool, name string) (map[string]any, error) {
	var (
		active          bool
		plugin, walStat *string
		lagBytes        *int64
		retained        *int64
	)
	err := pool.QueryRow(ctx, `SELECT active, plugin, wal_status,
		pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&active, &plugin, &walStat, &lagBytes, &retained)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"name": name, "exists": true, "active": active, "plugin": deref(plugin), "walStatus": deref(walStat),
		"lagBytes": deref(lagBytes), "retainedWalBytes": deref(retained),
		"checkedAt": time.Now().UTC().Format(time.RFC3339),
	}, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
