package cdc

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Offsets is what a connector remembers between runs besides its slot.
type Offsets struct {
	// Slot is the replication slot the offsets belong to.
	Slot string
	// SnapshotCompleted is set once every snapshot record is acknowledged
	// by Kafka.
	SnapshotCompleted bool
	// FlushedLSN is the last position confirmed to the slot (informational:
	// the slot itself is the source of truth for where streaming resumes).
	FlushedLSN uint64
	// Incremental is the incremental snapshot state as of FlushedLSN (nil
	// before the first signal): what is left to read and how far, as
	// Debezium keeps it in its offsets, so a restart resumes the snapshot.
	Incremental *IncrementalSnapshot
}

// OffsetStore persists connector offsets by connector name.
type OffsetStore interface {
	LoadOffsets(ctx context.Context, name string) (Offsets, bool, error)
	SaveOffsets(ctx context.Context, name string, o Offsets) error
}

// MemoryOffsets keeps offsets in memory, for tests and one-off runs.
type MemoryOffsets struct {
	mu sync.Mutex
	m  map[string]Offsets
}

// LoadOffsets implements OffsetStore.
func (s *MemoryOffsets) LoadOffsets(_ context.Context, name string) (Offsets, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.m[name]
	o.Incremental = o.Incremental.clone()
	return o, ok, nil
}

// SaveOffsets implements OffsetStore.
func (s *MemoryOffsets) SaveOffsets(_ context.Context, name string, o Offsets) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]Offsets{}
	}
	o.Incremental = o.Incremental.clone()
	s.m[name] = o
	return nil
}

// PostgresOffsets keeps offsets in TrackOps' own database (cdc_offsets).
type PostgresOffsets struct {
	Pool *pgxpool.Pool
}

// LoadOffsets implements OffsetStore.
func (s PostgresOffsets) LoadOffsets(ctx context.Context, name string) (Offsets, bool, error) {
	var o Offsets
	var lsn int64
	err := s.Pool.QueryRow(ctx, `SELECT slot_name, snapshot_completed, flushed_lsn, incremental_snapshot FROM cdc_offsets WHERE name = $1`, name).
		Scan(&o.Slot, &o.SnapshotCompleted, &lsn, &o.Incremental)
	if errors.Is(err, pgx.ErrNoRows) {
		return Offsets{}, false, nil
	}
	if err != nil {
		return Offsets{}, false, fmt.Errorf("load offsets of connector %s: %w", name, err)
	}
	o.FlushedLSN = uint64(lsn)
	return o, true, nil
}

// SaveOffsets implements OffsetStore.
func (s PostgresOffsets) SaveOffsets(ctx context.Context, name string, o Offsets) error {
	_, err := s.Pool.Exec(ctx, `
INSERT INTO cdc_offsets (name, slot_name, snapshot_completed, flushed_lsn, incremental_snapshot, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (name) DO UPDATE SET slot_name = EXCLUDED.slot_name, snapshot_completed = EXCLUDED.snapshot_completed,
    flushed_lsn = EXCLUDED.flushed_lsn, incremental_snapshot = EXCLUDED.incremental_snapshot, updated_at = now()`,
		name, o.Slot, o.SnapshotCompleted, int64(o.FlushedLSN), o.Incremental)
	if err != nil {
		return fmt.Errorf("save offsets of connector %s: %w", name, err)
	}
	return nil
}
