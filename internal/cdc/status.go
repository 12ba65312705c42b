package cdc

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is a connector's health and lag, for `trackops cdc status`,
// GET /api/v1/ops/cdc and the health "cdc" component.
type Status struct {
	Name string `json:"name"`
	// State is Kafka Connect's — RUNNING, PAUSED, FAILED or UNASSIGNED —
	// or STANDBY in a process where another process streams the connector.
	State string `json:"state"`
	// Trace is the failure of a FAILED connector.
	Trace string `json:"trace,omitempty"`
	// Phase is what a running connector does: starting, snapshotting, streaming.
	Phase             string     `json:"phase"`
	Database          string     `json:"database"`
	TopicPrefix       string     `json:"topic_prefix"`
	Slot              string     `json:"slot"`
	Publication       string     `json:"publication"`
	SlotExists        bool       `json:"slot_exists"`
	SlotActive        bool       `json:"slot_active"`
	RestartLSN        string     `json:"restart_lsn,omitempty"`
	ConfirmedFlushLSN string     `json:"confirmed_flush_lsn,omitempty"`
	CurrentWALLSN     string     `json:"current_wal_lsn,omitempty"`
	ReceivedLSN       string     `json:"received_lsn,omitempty"`
	FlushedLSN        string     `json:"flushed_lsn,omitempty"`
	RetainedWALBytes  int64      `json:"retained_wal_bytes"`
	FlushLagBytes     int64      `json:"lag_bytes"`
	LagMillis         int64      `json:"lag_ms"`
	EventsTotal       uint64     `json:"events_total"`
	EventsPerSecond   float64    `json:"events_per_second"`
	LastEventAt       *time.Time `json:"last_event_at,omitempty"`
	LastEventAgeSecs  float64    `json:"last_event_age_seconds"`
	SnapshotCompleted bool       `json:"snapshot_completed"`
	// Snapshot is the progress of the running (or last) ad-hoc snapshot:
	// incremental or blocking, taken on a signal.
	Snapshot *SnapshotProgress `json:"snapshot_progress,omitempty"`
	Topics   []string          `json:"topics,omitempty"`
	// SlotError is set when the slot could not be inspected.
	SlotError string `json:"slot_error,omitempty"`
	// WorkerID is the process reporting; ActiveWorkerID the process
	// streaming the connector (holding its lease), when known.
	WorkerID       string `json:"worker_id,omitempty"`
	ActiveWorkerID string `json:"active_worker_id,omitempty"`
}

// Health maps the status to the health component's UP, DEGRADED or DOWN:
// a failed connector is DOWN; a paused one, or one whose slot retains more
// than maxRetained bytes, is DEGRADED.
func (s Status) Health(maxRetained int64) string {
	switch {
	case s.State == "FAILED":
		return "DOWN"
	case s.State == "PAUSED", s.SlotError != "", maxRetained > 0 && s.RetainedWALBytes > maxRetained:
		return "DEGRADED"
	}
	return "UP"
}

// Status reports the connector's own counters and its slot's lag, read
// from the server.
func (c *Connector) Status(ctx context.Context) Status {
	s := Status{
		Name:              c.cfg.Name,
		Phase:             c.stats.phase.Load().(string),
		Database:          c.cfg.DBName,
		TopicPrefix:       c.cfg.TopicPrefix,
		Slot:              c.cfg.SlotName,
		Publication:       c.cfg.PublicationName,
		EventsTotal:       c.stats.events.Load(),
		SnapshotCompleted: c.stats.snapshotCompleted.Load(),
		LastEventAgeSecs:  -1,
	}
	if p := c.stats.snapshot.Load(); p != nil {
		cp := *p
		s.Snapshot = &cp
	}
	if f := c.stats.flushedLSN.Load(); f > 0 {
		s.FlushedLSN = lsnText(f)
	}
	if r := c.stats.receivedLSN.Load(); r > 0 {
		s.ReceivedLSN = lsnText(r)
	}
	if n := c.stats.lastEventNanos.Load(); n > 0 {
		t := time.Unix(0, n).UTC()
		s.LastEventAt = &t
		s.LastEventAgeSecs = time.Since(t).Seconds()
		if commit := c.stats.lastCommitNanos.Load(); commit > 0 {
			s.LagMillis = max(0, (n-commit)/int64(time.Millisecond))
		}
	}
	s.EventsPerSecond = c.rate(s.EventsTotal)
	if em := c.em.Load(); em != nil {
		s.Topics = em.topicList()
		sort.Strings(s.Topics)
	}
	if err := c.slotLag(ctx, &s); err != nil {
		s.SlotError = err.Error()
	}
	m := c.metrics
	m.retainedWAL.WithLabelValues(c.cfg.Name, c.cfg.SlotName).Set(float64(s.RetainedWALBytes))
	m.flushLag.WithLabelValues(c.cfg.Name, c.cfg.SlotName).Set(float64(s.FlushLagBytes))
	m.lastEventAge.WithLabelValues(c.cfg.Name).Set(s.LastEventAgeSecs)
	m.sourceLagMillis.WithLabelValues(c.cfg.Name).Set(float64(s.LagMillis))
	return s
}

// rate is events per second since the previous call at least a second ago.
func (c *Connector) rate(total uint64) float64 {
	st := &c.stats
	st.rateMu.Lock()
	defer st.rateMu.Unlock()
	now := time.Now()
	if st.rateAt.IsZero() {
		st.rateAt, st.rateEvents = now, total
		return 0
	}
	if d := now.Sub(st.rateAt); d >= time.Second {
		st.ratePerSecs = float64(total-st.rateEvents) / d.Seconds()
		st.rateAt, st.rateEvents = now, total
	}
	return st.ratePerSecs
}

func (c *Connector) slotLag(ctx context.Context, s *Status) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	q := `SELECT pg_current_wal_lsn()::text, s.active, s.restart_lsn::text, s.confirmed_flush_lsn::text,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint
FROM pg_replication_slots s WHERE s.slot_name = $1`
	var row pgx.Row
	if pool := c.pool.Load(); pool != nil {
		row = pool.QueryRow(ctx, q, c.cfg.SlotName)
	} else {
		conn, err := pgx.Connect(ctx, c.cfg.ConnString(false))
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		row = conn.QueryRow(ctx, q, c.cfg.SlotName)
	}
	var restart, flush *string
	err := row.Scan(&s.CurrentWALLSN, &s.SlotActive, &restart, &flush, &s.RetainedWALBytes, &s.FlushLagBytes)
	if err == pgx.ErrNoRows {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read slot %s: %w", c.cfg.SlotName, err)
	}
	s.SlotExists = true
	s.RestartLSN, s.ConfirmedFlushLSN = deref(restart), deref(flush)
	return nil
}

// monitor refreshes the lag gauges while the connector runs.
func (c *Connector) monitor(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Status(ctx)
		}
	}
}

func lsnText(v uint64) string { return fmt.Sprintf("%X/%X", uint32(v>>32), uint32(v)) }

// runRefs are what Status reads of a running connector.
type runRefs struct {
	pool atomic.Pointer[pgxpool.Pool]
	em   atomic.Pointer[emitter]
}
