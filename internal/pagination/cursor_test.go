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
