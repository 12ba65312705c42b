package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestUUIDParametersOnTheServer: uuid.UUID parameters, written as 16 bytes
// where the parameter is a uuid, reach PostgreSQL as the same value in
// every shape the code uses: a uuid, text, an element of uuid[], a NULL
// through a nil pointer, and a key to find a row by.
func TestUUIDParametersOnTheServer(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	ctx := context.Background()
	u := uuid.New()

	var asUUID, asText string
	var found int
	if err := db.Pool.QueryRow(ctx, `SELECT $1::uuid::text, $2::text, array_position($3::uuid[], $1::uuid)`,
		u, u, []uuid.UUID{uuid.Nil, u}).Scan(&asUUID, &asText, &found); err != nil {
		t.Fatal(err)
	}
	if asUUID != u.String() || asText != u.String() || found != 2 {
		t.Fatalf("server read %q as uuid, %q as text, position %d in the array; want %q, %q, 2", asUUID, asText, found, u, u)
	}
	var isNull bool
	if err := db.Pool.QueryRow(ctx, `SELECT $1::uuid IS NULL`, (*uuid.UUID)(nil)).Scan(&isNull); err != nil || !isNull {
		t.Fatalf("nil *uuid.UUID: null=%v, %v", isNull, err)
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `CREATE TEMP TABLE keyed (id uuid PRIMARY KEY, note text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO keyed VALUES ($1, 'x')`, u); err != nil {
		t.Fatal(err)
	}
	var back uuid.UUID
	if err := conn.QueryRow(ctx, `SELECT id FROM keyed WHERE id = $1`, u).Scan(&back); err != nil || back != u {
		t.Fatalf("row by its uuid key: %v, %v; want %v", back, err, u)
	}
}
