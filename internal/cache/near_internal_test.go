package cache

import (
	"testing"
	"time"
)

// The slot rules that keep near cache reads from going back in time, each
// step run in the order given on one key.
func TestNearSlotRules(t *testing.T) {
	type step struct {
		op      string // reserve (as reader r), fill (reader r at version), invalidate, offline, online
		reader  int
		version int64
	}
	tests := []struct {
		name    string
		steps   []step
		want    int64 // version served afterwards; 0 = nothing
		wantLen int
	}{
		{"a read fills its slot", []step{{"reserve", 1, 0}, {"fill", 1, 3}}, 3, 1},
		{"an invalidation between read and fill keeps the read out",
			[]step{{"reserve", 1, 0}, {"invalidate", 0, 0}, {"fill", 1, 3}}, 0, 1},
		{"a read whose slot was replaced still sets a floor",
			[]step{{"reserve", 1, 0}, {"invalidate", 0, 0}, {"reserve", 2, 0}, {"fill", 2, 4}, {"fill", 1, 5}}, 0, 1},
		{"no read below the floor fills",
			[]step{{"reserve", 1, 0}, {"invalidate", 0, 0}, {"reserve", 2, 0}, {"fill", 1, 5}, {"fill", 2, 4}}, 0, 1},
		{"a read at the floor fills",
			[]step{{"reserve", 1, 0}, {"invalidate", 0, 0}, {"reserve", 2, 0}, {"fill", 1, 5}, {"fill", 2, 4}, {"reserve", 3, 0}, {"fill", 3, 5}}, 5, 1},
		{"an invalidation keeps the floor",
			[]step{{"reserve", 1, 0}, {"fill", 1, 5}, {"invalidate", 0, 0}, {"reserve", 2, 0}, {"fill", 2, 4}}, 0, 1},
		{"an older read does not replace a newer one",
			[]step{{"reserve", 1, 0}, {"reserve", 2, 0}, {"fill", 2, 5}, {"fill", 1, 4}}, 5, 1},
		{"a newer read replaces an older one",
			[]step{{"reserve", 1, 0}, {"reserve", 2, 0}, {"fill", 1, 4}, {"fill", 2, 5}}, 5, 1},
		{"a read from before an invalidation cannot fill the slot after it",
			[]step{{"reserve", 1, 0}, {"invalidate", 0, 0}, {"reserve", 2, 0}, {"fill", 1, 4}, {"fill", 2, 5}}, 5, 1},
		{"nothing is reserved or served while offline",
			[]step{{"offline", 0, 0}, {"reserve", 1, 0}, {"fill", 1, 3}}, 0, 0},
		{"going offline empties it",
			[]step{{"reserve", 1, 0}, {"fill", 1, 3}, {"offline", 0, 0}, {"online", 0, 0}}, 0, 0},
		{"a read that began before going offline cannot fill afterwards",
			[]step{{"reserve", 1, 0}, {"offline", 0, 0}, {"online", 0, 0}, {"fill", 1, 3}}, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNear(&Store{name: "orders"}, 10, time.Minute, NewMetrics(nil))
			n.setLive(true)
			now := time.Now()
			slots := map[int]*nearSlot{}
			for _, s := range tc.steps {
				switch s.op {
				case "reserve":
					slots[s.reader] = n.reserve("k", now)
				case "fill":
					n.fill("k", slots[s.reader], s.version, s.version, now)
				case "invalidate":
					n.invalidate("k")
				case "offline":
					n.setLive(false)
				case "online":
					n.setLive(true)
				}
			}
			v, ok := n.lookup("k", now)
			got := int64(0)
			if ok {
				got = v.(int64)
			}
			if got != tc.want || n.Len() != tc.wantLen {
				t.Errorf("serves %d with %d slots, want %d with %d", got, n.Len(), tc.want, tc.wantLen)
			}
		})
	}
}

func TestNearExpiresAndStaysBounded(t *testing.T) {
	n := newNear(&Store{name: "orders"}, 100, time.Second, NewMetrics(nil))
	n.setLive(true)
	now := time.Now()
	n.fill("k", n.reserve("k", now), "v", 1, now)
	if _, ok := n.lookup("k", now.Add(999*time.Millisecond)); !ok {
		t.Error("entry gone before its TTL")
	}
	if _, ok := n.lookup("k", now.Add(time.Second)); ok {
		t.Error("entry served at its TTL")
	}
	for i := range 1000 {
		k := string(rune('a'+i%26)) + time.Duration(i).String()
		n.fill(k, n.reserve(k, now), i, 1, now)
		if n.Len() > 100 {
			t.Fatalf("%d entries, bound 100", n.Len())
		}
	}
}
