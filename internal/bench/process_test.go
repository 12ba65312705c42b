package bench

import (
	"context"
	"testing"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestPostgresCPUCountsTheRightSessions: the CPU figures read every session
// of the scenario's database (the process under test names none of its
// own), and the relay's fixed-rate figure leaves out only the harness's.
func TestPostgresCPUCountsTheRightSessions(t *testing.T) {
	ctx := context.Background()
	db, err := CreateDatabase(ctx, postgrestest.AdminURL(), "trackops_test_cpu")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Drop(context.WithoutCancel(ctx))
	process, err := postgres.Connect(ctx, db.URL) // as the process under test connects
	if err != nil {
		t.Fatal(err)
	}
	defer process.Close()
	var processPid, harnessPid int
	if err := process.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&processPid); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&harnessPid); err != nil {
		t.Fatal(err)
	}
	all, except := postgresCPU(ctx, db), postgresCPUExcept(ctx, db, harnessApp)
	if _, ok := all[processPid]; !ok {
		t.Errorf("postgresCPU misses the process's session %d: %v", processPid, all)
	}
	if _, ok := all[harnessPid]; !ok {
		t.Errorf("postgresCPU misses the harness's session %d: %v", harnessPid, all)
	}
	if _, ok := except[processPid]; !ok {
		t.Errorf("postgresCPUExcept misses the process's session %d: %v", processPid, except)
	}
	if _, ok := except[harnessPid]; ok {
		t.Errorf("postgresCPUExcept counts the harness's session %d", harnessPid)
	}
}
