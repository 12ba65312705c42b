package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/events"
)

// TestEachMutationLeavesExactlyOneAuditRow sends mutations of several kinds
// through the full app (order create, status change, inventory set, flag
// set, DLQ replay dry run, DLQ discard, and refused ones) one at a time, and checks that
// each adds exactly one row to audit_log — the request's, with who, what,
// target, status and outcome.
func TestEachMutationLeavesExactlyOneAuditRow(t *testing.T) {
	t.Parallel()
	fa := startFullApp(t, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	op := fa.key(t, "audit-operator", operator)
	adm := fa.key(t, "audit-admin", admin)
	view := fa.key(t, "audit-viewer", viewer)

	auditRows := func() int {
		t.Helper()
		if err := fa.security.audit.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := fa.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// mutate sends one mutation under its own request id and checks the
	// audit log grew by exactly one row, the one of this request.
	mutate := func(name, token, actor, method, path, body string, wantStatus int, wantOutcome string) []byte {
		t.Helper()
		before := auditRows()
		reqID := "audit-" + uuid.NewString()
		code, resp := fa.do(t, token, method, path, body, "X-Request-Id", reqID)
		if code != wantStatus {
			t.Fatalf("%s: %s %s answered %d %s, want %d", name, method, path, code, resp, wantStatus)
		}
		if added := auditRows() - before; added != 1 {
			rows, _ := fa.db.Pool.Query(ctx, `SELECT action, actor, target, request_id FROM audit_log ORDER BY id DESC LIMIT $1`, max(added, 1))
			var seen []string
			for rows.Next() {
				var a, ac, tg, rid string
				_ = rows.Scan(&a, &ac, &tg, &rid)
				seen = append(seen, fmt.Sprintf("%s by %s on %s (request %q)", a, ac, tg, rid))
			}
			rows.Close()
			t.Errorf("%s: %d audit rows added, want exactly 1: %v", name, added, seen)
			return resp
		}
		var gotActor, gotMethod, gotTarget, gotOutcome string
		var gotStatus int
		err := fa.db.Pool.QueryRow(ctx, `SELECT actor, method, target, status, outcome FROM audit_log WHERE request_id = $1`, reqID).
			Scan(&gotActor, &gotMethod, &gotTarget, &gotStatus, &gotOutcome)
		if err != nil {
			t.Errorf("%s: no audit row with the request's id: %v", name, err)
			return resp
		}
		if gotActor != actor || gotMethod != method || gotTarget != path || gotStatus != wantStatus || gotOutcome != wantOutcome {
			t.Errorf("%s: audit row %s %s %s %d %s, want %s %s %s %d %s", name, gotActor, gotMethod, gotTarget, gotStatus, gotOutcome,
				actor, method, path, wantStatus, wantOutcome)
		}
		return resp
	}

	mutate("inventory set", op, "apikey:audit-operator", http.MethodPut, "/api/v1/inventory/SKU-AUDIT-1",
		`{"name":"audited widget","on_hand":10}`, http.StatusCreated, "success")
	var created struct{ ID string }
	resp := mutate("order create", op, "apikey:audit-operator", http.MethodPost, "/api/v1/orders",
		`{"customer_id":"audit-customer","items":[{"sku":"SKU-AUDIT-1","quantity":1,"unit_price":"5.00"}]}`,
		http.StatusCreated, "success")
	if err := json.Unmarshal(resp, &created); err != nil || created.ID == "" {
		t.Fatalf("order create answered %s", resp)
	}
	// The saga confirms the order once stock is reserved; only then may it
	// move on to PROCESSING.
	waitFor(t, "order confirmed", func() bool {
		var o struct{ Status string }
		code, b := fa.do(t, op, http.MethodGet, "/api/v1/orders/"+created.ID, "")
		return code == http.StatusOK && json.Unmarshal(b, &o) == nil && o.Status == "CONFIRMED"
	})
	mutate("order status change", op, "apikey:audit-operator", http.MethodPatch, "/api/v1/orders/"+created.ID+"/status",
		`{"status":"PROCESSING","reason":"picked"}`, http.StatusOK, "success")
	mutate("flag set", adm, "apikey:audit-admin", http.MethodPut, "/api/v1/ops/flags/audit-test-flag",
		`{"value":true}`, http.StatusOK, "success")

	// A dead letter to replay: a record no consumer can decode, dead-lettered
	// by the inventory consumer and recorded by the DLQ monitor.
	if err := fa.producer.ProduceSync(ctx, &kgo.Record{Topic: events.OrderCreated, Value: []byte("not an event")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var dead dlq.ListJSON
	waitFor(t, "dead letter recorded", func() bool {
		code, b := fa.do(t, view, http.MethodGet, "/api/v1/ops/dlq", "")
		return code == http.StatusOK && json.Unmarshal(b, &dead) == nil && len(dead.Messages) > 0
	})
	mutate("DLQ replay dry run", adm, "apikey:audit-admin", http.MethodPost, "/api/v1/ops/dlq/replay",
		fmt.Sprintf(`{"id":%d,"dry_run":true}`, dead.Messages[0].ID), http.StatusOK, "success")
	mutate("DLQ discard", adm, "apikey:audit-admin", http.MethodPost, fmt.Sprintf("/api/v1/ops/dlq/%d/discard", dead.Messages[0].ID),
		`{"reason":"poison test record"}`, http.StatusOK, "success")

	// Refused and rejected attempts are one row each too.
	mutate("order create as viewer", view, "apikey:audit-viewer", http.MethodPost, "/api/v1/orders",
		`{"customer_id":"audit-customer","items":[{"sku":"SKU-AUDIT-1","quantity":1,"unit_price":"5.00"}]}`,
		http.StatusForbidden, "denied")
	mutate("flag set without a token", "", "anonymous", http.MethodPut, "/api/v1/ops/flags/audit-test-flag",
		`{"value":false}`, http.StatusUnauthorized, "denied")
	mutate("illegal transition", op, "apikey:audit-operator", http.MethodPatch, "/api/v1/orders/"+created.ID+"/status",
		`{"status":"PENDING"}`, http.StatusConflict, "rejected")
}

// waitFor polls cond until it holds; the deadline only guards against a
// hang, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
