package postgres

import (
	"bytes"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDEncodesAsBytes: with registerUUID a uuid.UUID parameter of type
// uuid is planned by its own wrapper and written as its 16 bytes; one of
// type text still goes through the Valuer and reads as the usual string.
func TestUUIDEncodesAsBytes(t *testing.T) {
	u := uuid.MustParse("0b7c3a52-6f1e-4d2a-9c6b-2f8e4a1d5c30")
	m := pgtype.NewMap()
	registerUUID(m)

	if _, ok := m.PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u).(*uuidEncodePlan); !ok {
		t.Fatalf("uuid parameter planned as %T, want the 16-byte plan", m.PlanEncode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u))
	}
	got, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, nil)
	if err != nil || !bytes.Equal(got, u[:]) {
		t.Fatalf("binary uuid = %x, %v; want %x", got, err, u[:])
	}
	for _, tc := range []struct {
		oid    uint32
		format int16
	}{
		{pgtype.UUIDOID, pgtype.TextFormatCode},
		{pgtype.TextOID, pgtype.TextFormatCode},
		{pgtype.TextOID, pgtype.BinaryFormatCode},
		{pgtype.VarcharOID, pgtype.BinaryFormatCode},
	} {
		got, err := m.Encode(tc.oid, tc.format, u, nil)
		if err != nil || string(got) != u.String() {
			t.Errorf("oid %d format %d: %q, %v; want %q", tc.oid, tc.format, got, err, u.String())
		}
	}
	// Elements of an array parameter take the same plan.
	arr, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, []uuid.UUID{u, uuid.Nil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(arr, u[:]) {
		t.Errorf("uuid[] parameter %x does not hold %x", arr, u[:])
	}
}

// BenchmarkEncodeUUID: a uuid parameter through the Valuer (pgx's default
// for google/uuid) against registerUUID's 16-byte plan.
func BenchmarkEncodeUUID(b *testing.B) {
	u := uuid.New()
	for _, bc := range []struct {
		name     string
		register bool
	}{{"valuer", false}, {"bytes", true}} {
		b.Run(bc.name, func(b *testing.B) {
			m := pgtype.NewMap()
			if bc.register {
				registerUUID(m)
			}
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, u, buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
