package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// bootstrapKeyForTests has the shape of an API key (tok_ + 32 bytes in
// base64url), as TRACKOPS_BOOTSTRAP_ADMIN_KEY requires.
const bootstrapKeyForTests = "tok_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

// TestOrdersFlowThroughPgBouncer runs the whole platform with
// TRACKOPS_DATABASE_URL pointing at PgBouncer in transaction-pooling mode
// and TRACKOPS_DATABASE_DIRECT_URL at PostgreSQL: the API, the relay and
// the saga work through the pooler, while migrations and the relay's LISTEN
// use the direct URL. The relay's polling fallback is set to an hour, so
// orders reach CONFIRMED only if NOTIFY wakes it — LISTEN through a
// transaction pooler would hear nothing. The first admin key comes from
// TRACKOPS_BOOTSTRAP_ADMIN_KEY.
func TestOrdersFlowThroughPgBouncer(t *testing.T) {
	t.Parallel()
	bouncer := postgrestest.StartPgBouncer(t)
	fa := startFullApp(t, slog.New(slog.DiscardHandler), func(cfg *config.Config) {
		direct, err := pgx.ParseConfig(cfg.Database.URL)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Database.DirectURL = cfg.Database.URL
		cfg.Database.URL = bouncer.URL(direct.Database)
		cfg.Relay.PollInterval = time.Hour
		cfg.Auth.BootstrapAdminKey = bootstrapKeyForTests
	})
	if !fa.cfg.Database.Pooled() {
		t.Fatal("a direct URL apart from the database URL must mean a pooler in between")
	}
	// The container health check's command sees the process ready.
	probe := &Env{Config: config.Config{HTTP: config.HTTP{Addr: strings.TrimPrefix(fa.base, "http://")}}, Stdout: io.Discard, Stderr: io.Discard}
	if err := healthcheckCommand(context.Background(), probe, nil); err != nil {
		t.Fatalf("trackops healthcheck: %v", err)
	}
	admin := bootstrapKeyForTests
	fa.mustDo(t, http.StatusCreated, admin, http.MethodPut, "/api/v1/inventory/SKU-PGB", `{"name":"pooled widget","on_hand":1000}`, nil)

	const orders = 24
	ids := make([]string, orders)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Go(func() {
			code, b := fa.do(t, admin, http.MethodPost, "/api/v1/orders",
				fmt.Sprintf(`{"customer_id":"c-%d","items":[{"sku":"SKU-PGB","quantity":2,"unit_price":"3.50"}]}`, i))
			if code != http.StatusCreated {
				t.Errorf("order %d: %d %s", i, code, b)
				return
			}
			var o struct{ ID string }
			_ = json.Unmarshal(b, &o)
			ids[i] = o.ID
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	deadline := time.Now().Add(60 * time.Second) // a deadlock guard, not a speed assertion
	for _, id := range ids {
		for {
			var o struct{ Status string }
			fa.mustDo(t, http.StatusOK, admin, http.MethodGet, "/api/v1/orders/"+id, "", &o)
			if o.Status == "CONFIRMED" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s is %s; the saga did not confirm it through the pooler", id, o.Status)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var item struct{ Reserved int }
	fa.mustDo(t, http.StatusOK, admin, http.MethodGet, "/api/v1/inventory/SKU-PGB", "", &item)
	if item.Reserved != 2*orders {
		t.Fatalf("reserved %d, want %d", item.Reserved, 2*orders)
	}

	// The traffic did go through PgBouncer, in transaction mode.
	mode := ""
	for _, c := range bouncer.Show(t, "CONFIG") {
		if c["key"] == "pool_mode" {
			mode = c["value"]
		}
	}
	if mode != "transaction" {
		t.Fatalf("pgbouncer pool_mode = %q, want transaction", mode)
	}
	var xacts int
	for _, s := range bouncer.Show(t, "STATS") {
		if s["database"] == fa.db.Name {
			xacts, _ = strconv.Atoi(s["total_xact_count"])
		}
	}
	if xacts < orders {
		t.Fatalf("pgbouncer counted %d transactions on %s; the pools did not go through it", xacts, fa.db.Name)
	}
}
