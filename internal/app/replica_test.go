package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// TestReadReplica runs the whole platform on a private primary with a
// streaming replica as TRACKOPS_DATABASE_READ_URL, and shows:
//
//   - reads go to the replica: with its replay paused, a change made on the
//     primary is not in a list the API answers, and the old row is;
//   - writes go to the primary: a cancellation through the API is on the
//     primary and not on the paused replica;
//   - read-your-writes: the client that cancelled reads its cancellation
//     (order, list, history) at once; another client's read of the order
//     gets the new version too — the cache knows it was committed (its
//     invalidation tombstone), so the lagging replica's older row is
//     neither served nor cached;
//   - a replica too far behind, or down, is not read from: reads go to the
//     primary, and /health says so.
func TestReadReplica(t *testing.T) {
	pair := postgrestest.NewReplicaPair(t)
	fa := startFullApp(t, slog.New(slog.DiscardHandler), func(c *config.Config) {
		c.Database.URL = pair.URL("trackops")
		c.Database.ReadURL = pair.ReplicaURL("trackops")
		c.Database.ReadMaxLag = 50 * time.Second // the lag fallback is shown below on its own
	})
	ctx := context.Background()
	primary, err := pgxpool.New(ctx, pair.URL("trackops"))
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	replica, err := pgxpool.New(ctx, pair.ReplicaURL("trackops"))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()

	writer := fa.key(t, "writer", httpapi.RoleOperator)
	other := fa.key(t, "other", httpapi.RoleOperator)
	fa.mustDo(t, http.StatusCreated, writer, http.MethodPut, "/api/v1/inventory/REP-1", `{"name":"replicated","on_hand":10}`, nil)
	var o struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		Version int    `json:"version"`
	}
	fa.mustDo(t, http.StatusCreated, writer, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"cust-replica","items":[{"sku":"REP-1","quantity":1,"unit_price":"5.00"}]}`, &o)
	waitFor(t, "the saga to confirm the order", func() bool {
		var status string
		err := primary.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, o.ID).Scan(&status)
		return err == nil && status == "CONFIRMED"
	})
	waitFor(t, "the app to read from the replica", func() bool { return fa.reads.Status().Usable })
	pair.WaitCaughtUp()
	pair.PauseReplay()

	// A change on the primary alone: the replica still shows the old row.
	if _, err := primary.Exec(ctx, `UPDATE orders SET customer_id = 'cust-moved' WHERE id = $1`, o.ID); err != nil {
		t.Fatal(err)
	}
	countOn := func(db *pgxpool.Pool, customer string) int {
		var n int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM orders WHERE customer_id = $1`, customer).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if countOn(primary, "cust-replica") != 0 || countOn(replica, "cust-replica") != 1 {
		t.Fatal("the replica should still hold the old row, the primary the new one")
	}
	listed := func(token, customer string) int {
		var page struct {
			Orders []json.RawMessage `json:"orders"`
		}
		fa.mustDo(t, http.StatusOK, token, http.MethodGet, "/api/v1/orders?customer_id="+customer, "", &page)
		return len(page.Orders)
	}
	if n := listed(other, "cust-replica"); n != 1 {
		t.Fatalf("the API listed %d orders of the old customer: the list was not read from the replica", n)
	}

	// A write through the API goes to the primary.
	fa.mustDo(t, http.StatusOK, writer, http.MethodPost, "/api/v1/orders/"+o.ID+"/cancel", `{"reason":"replica test"}`, nil)
	statusOn := func(db *pgxpool.Pool) (string, int) {
		var s string
		var v int
		if err := db.QueryRow(ctx, `SELECT status, version FROM orders WHERE id = $1`, o.ID).Scan(&s, &v); err != nil {
			t.Fatal(err)
		}
		return s, v
	}
	pStatus, pVersion := statusOn(primary)
	rStatus, rVersion := statusOn(replica)
	if pStatus != "CANCELLED" || rStatus != "CONFIRMED" || rVersion >= pVersion {
		t.Fatalf("primary %s v%d, replica %s v%d: the cancellation must be on the primary only", pStatus, pVersion, rStatus, rVersion)
	}

	// Read-your-writes: the writer sees its cancellation everywhere.
	var got struct {
		Status  string `json:"status"`
		Version int    `json:"version"`
	}
	fa.mustDo(t, http.StatusOK, writer, http.MethodGet, "/api/v1/orders/"+o.ID, "", &got)
	if got.Status != "CANCELLED" || got.Version != pVersion {
		t.Fatalf("the writer read %s v%d after its cancellation, want CANCELLED v%d", got.Status, got.Version, pVersion)
	}
	if n := listed(writer, "cust-replica"); n != 0 {
		t.Fatalf("the writer's list shows the replica's stale row (%d)", n)
	}
	var hist struct {
		History []struct {
			To string `json:"to_status"`
		} `json:"history"`
	}
	fa.mustDo(t, http.StatusOK, writer, http.MethodGet, "/api/v1/orders/"+o.ID+"/history", "", &hist)
	if n := len(hist.History); n == 0 || hist.History[n-1].To != "CANCELLED" {
		t.Fatalf("the writer's history does not end with its cancellation: %+v", hist)
	}
	// Another client, once the cancellation's event has refreshed the cache
	// (until then this process reads the order it wrote from the primary):
	// the cache knows the new version is committed, so the replica's older
	// row is read again from the primary and never cached.
	cachedVersion := func() (int, byte) {
		raw, err := fa.stores.Orders.Client().Get(ctx, fa.stores.OrderKey(o.ID)).Bytes()
		if err != nil || len(raw) < 21 {
			return 0, 0
		}
		v, _ := strconv.Atoi(string(raw[:20]))
		return v, raw[20]
	}
	waitFor(t, "the cancellation to refresh the cache", func() bool { v, _ := cachedVersion(); return v >= pVersion })
	fa.mustDo(t, http.StatusOK, other, http.MethodGet, "/api/v1/orders/"+o.ID, "", &got)
	if got.Version != pVersion || got.Status != "CANCELLED" {
		t.Fatalf("another client read %s v%d, older than the committed v%d", got.Status, got.Version, pVersion)
	}
	if v, kind := cachedVersion(); v != pVersion {
		t.Fatalf("the cache holds v%d (%c), want v%d", v, kind, pVersion)
	}

	// A replica further behind than the bound is not read from.
	lagging := postgres.NewReads(primary, replica, time.Second, slog.New(slog.DiscardHandler))
	waitFor(t, "a paused replica to fall behind the 1 s bound", func() bool {
		lagging.Sample(ctx)
		return !lagging.Status().Usable && lagging.Pool(ctx) == primary
	})
	pair.ResumeReplay()
	waitFor(t, "the replica, caught up, to be read from again", func() bool {
		lagging.Sample(ctx)
		return lagging.Status().Usable && lagging.Pool(ctx) == replica
	})

	// A replica that is down: reads go to the primary, /health says so.
	pair.StopReplica()
	waitFor(t, "the app to stop reading from the stopped replica", func() bool { return !fa.reads.Status().Usable })
	if n := listed(other, "cust-moved"); n != 1 {
		t.Fatalf("with the replica down the list answered %d orders, want the primary's 1", n)
	}
	var health struct {
		Components map[string]struct {
			Status  string         `json:"status"`
			Details map[string]any `json:"details"`
		} `json:"components"`
	}
	fa.mustDo(t, http.StatusOK, writer, http.MethodGet, "/health", "", &health)
	if c := health.Components["replica"]; c.Status != "DEGRADED" || c.Details["readsTo"] != "primary" {
		t.Fatalf("health replica component: %+v", c)
	}
}
