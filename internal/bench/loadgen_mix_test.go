package bench

import (
	"strings"
	"testing"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestLoadNeverAsksToConfirm: only the saga confirms an order, so the load's
// status changes never ask for CONFIRMED; a PENDING order is read instead.
func TestLoadNeverAsksToConfirm(t *testing.T) {
	s := &loadState{cfg: LoadConfig{Target: "http://x", SKUs: 3, Mix: Mix{Status: 1}}, orders: map[string]string{}}
	for _, st := range []string{"PENDING", "PENDING", "CONFIRMED", "PROCESSING", "SHIPPED", "DELIVERED"} {
		id := "id-" + st + "-" + string(rune('a'+len(s.ids)))
		s.ids = append(s.ids, id)
		s.orders[id] = st
	}
	next := s.targeter()
	patches := 0
	for range 500 {
		var tg vegeta.Target
		if err := next(&tg); err != nil {
			t.Fatal(err)
		}
		if tg.Method != "PATCH" {
			continue
		}
		patches++
		if strings.Contains(string(tg.Body), "CONFIRMED") {
			t.Fatalf("load asked for %s on %s", tg.Body, tg.URL)
		}
		id := tg.URL[strings.Index(tg.URL, "/orders/")+len("/orders/") : strings.LastIndex(tg.URL, "/status")]
		if s.orders[id] == "PENDING" {
			t.Fatalf("load changed the status of PENDING order %s", id)
		}
	}
	if patches == 0 {
		t.Fatal("no status change was generated")
	}
}
