package cdc

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/postgres"
)

// SlotInfo is one logical replication slot of the current database, as
// `trackops cdc status` shows it, read straight from PostgreSQL so it works
// without a running connector.
type SlotInfo struct {
	Slot              string   `json:"slot"`
	Plugin            string   `json:"plugin"`
	Active            bool     `json:"active"`
	RestartLSN        string   `json:"restart_lsn"`
	ConfirmedFlushLSN string   `json:"confirmed_flush_lsn"`
	CurrentWALLSN     string   `json:"current_wal_lsn"`
	RetainedWALBytes  int64    `json:"retained_wal_bytes"`
	LagBytes          int64    `json:"lag_bytes"`
	Publications      []string `json:"publications"`
	// Connector names the persisted connector using the slot, if any.
	Connector      string `json:"connector,omitempty"`
	ConnectorState string `json:"connector_state"`
}

// Slots lists the logical replication slots of the database q is connected
// to, with their retained WAL and lag, the publications of the database and
// which persisted connector (if any) uses each slot.
func Slots(ctx context.Context, q postgres.Querier) ([]SlotInfo, error) {
	rows, err := q.Query(ctx, `
SELECT s.slot_name, coalesce(s.plugin, ''), s.active,
       coalesce(s.restart_lsn::text, ''), coalesce(s.confirmed_flush_lsn::text, ''), pg_current_wal_lsn()::text,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint,
       coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,
       coalesce((SELECT array_agg(pubname ORDER BY pubname) FROM pg_publication), '{}'),
       coalesce(c.name, ''), coalesce(CASE WHEN c.paused THEN 'PAUSED' END, '')
FROM pg_replication_slots s
LEFT JOIN cdc_connectors c ON c.config->>'slot.name' = s.slot_name
WHERE s.slot_type = 'logical' AND s.database = current_database()
ORDER BY s.slot_name`)
	if err != nil {
		return nil, fmt.Errorf("list replication slots: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (SlotInfo, error) {
		var s SlotInfo
		var paused string
		err := row.Scan(&s.Slot, &s.Plugin, &s.Active, &s.RestartLSN, &s.ConfirmedFlushLSN, &s.CurrentWALLSN,
			&s.RetainedWALBytes, &s.LagBytes, &s.Publications, &s.Connector, &paused)
		switch {
		case paused != "":
			s.ConnectorState = paused
		case s.Active:
			s.ConnectorState = "RUNNING"
		default:
			s.ConnectorState = "INACTIVE"
		}
		return s, err
	})
}

// WaitForSlot blocks until the logical replication slot named slot exists
// and has reached its consistent point, so that every transaction committed
// from then on is streamed. A slot being created is listed before it is
// consistent; a commit in that window would only be seen by the initial
// snapshot (whose reads derive no events). waiting is called once if the
// slot is not ready at first. It gives up after limit with an error.
func WaitForSlot(ctx context.Context, q postgres.Querier, slot string, limit time.Duration, waiting func()) error {
	deadline := time.Now().Add(limit)
	told := false
	for {
		var ready bool
		err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn IS NOT NULL)`, slot).Scan(&ready)
		if err == nil && ready {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replication slot %s was not ready within %s", slot, limit)
		}
		if !told && waiting != nil {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ConnectorSnapshot is the incremental snapshot one connector's offsets
// record as running, as `trackops cdc status` shows it.
type ConnectorSnapshot struct {
	Connector string `json:"connector"`
	*SnapshotProgress
}

// SnapshotsInProgress lists the incremental snapshots the offsets in
// cdc_offsets record as running, by connector name: their progress as of
// the last position each connector confirmed, read without a running
// connector.
func SnapshotsInProgress(ctx context.Context, q postgres.Querier) ([]ConnectorSnapshot, error) {
	rows, err := q.Query(ctx, `SELECT name, incremental_snapshot FROM cdc_offsets WHERE incremental_snapshot IS NOT NULL ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("read incremental snapshots: %w", err)
	}
	defer rows.Close()
	var out []ConnectorSnapshot
	for rows.Next() {
		var name string
		var s *IncrementalSnapshot
		if err := rows.Scan(&name, &s); err != nil {
			return nil, fmt.Errorf("read incremental snapshots: %w", err)
		}
		if p := ProgressOf(s); p != nil {
			out = append(out, ConnectorSnapshot{Connector: name, SnapshotProgress: p})
		}
	}
	return out, rows.Err()
}
