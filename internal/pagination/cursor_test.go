package pagination

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC)
	id := uuid.New()
	gotAt, gotID, err := Decode(Encode(at, id))
	if err != nil || !gotAt.Equal(at) || gotID != id {
		t.Fatalf("round trip: %v %v %v", gotAt, gotID, err)
	}
	for _, bad := range []string{"", "%%%", "bm90LWEtY3Vyc29y", Encode(at, id)[:10]} {
		if _, _, err := Decode(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("Decode(%q) = %v, want ErrBadCursor", bad, err)
		}
	}
}

func TestPageTrimsTheExtraRowAndPointsPastTheLast(t *testing.T) {
	type row struct {
		at time.Time
		id uuid.UUID
	}
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	rows := make([]row, 4)
	for i := range rows {
		rows[i] = row{base.Add(-time.Duration(i) * time.Minute), uuid.New()}
	}
	key := func(r row) (time.Time, uuid.UUID) { return r.at, r.id }
	page, next := Page(rows, 3, key)
	if len(page) != 3 || next != Encode(rows[2].at, rows[2].id) {
		t.Fatalf("a page of 3 from 4 rows: %d rows, next %q", len(page), next)
	}
	if page, next := Page(rows[:3], 3, key); len(page) != 3 || next != "" {
		t.Fatalf("the last page: %d rows, next %q, want 3 and none", len(page), next)
	}
}
