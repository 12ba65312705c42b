package cdc

import (
	"context"

	"github.com/trackops/trackops/internal/postgres"
)

// Report is what GET /api/v1/ops/cdc shows: the platform's event strategy,
// the connectors as this process sees them (its own state of each — STANDBY
// where another process streams it — with the active process's worker id)
// and every logical replication slot of the database.
type Report struct {
	Strategy   string   `json:"strategy"`
	Connectors []Status `json:"connectors"`
	// Slots are every logical replication slot of the database, whether a
	// connector of this process runs it or not.
	Slots []SlotInfo `json:"slots"`
}

// BuildReport assembles the report; m is nil in a process without the cdc
// role, which reports the slots alone.
func BuildReport(ctx context.Context, m *Manager, db postgres.Querier, strategy string) (Report, error) {
	rep := Report{Strategy: strategy, Connectors: []Status{}}
	if m != nil {
		if st := m.Status(ctx); st != nil {
			rep.Connectors = st
		}
	}
	slots, err := Slots(ctx, db)
	if err != nil {
		return Report{}, err
	}
	rep.Slots = slots
	return rep, nil
}
