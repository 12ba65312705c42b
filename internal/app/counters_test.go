package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/trackops/trackops/internal/dlq"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// `trackops dlq list --json` and GET /api/v1/ops/dlq report the same
// counts, groups and messages for the same dead letters, and the counts
// agree with the groups beside them.
func TestDLQListJSONMatchesTheAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := postgrestest.New(t)
	store := dlq.NewStore(db.Pool)
	for i, msg := range []string{"reserve stock for order 1: timeout after 5000 ms", "reserve stock for order 2: timeout after 5000 ms", "bad json"} {
		fp, pattern := dlq.Fingerprint("error", msg)
		if _, _, err := store.Insert(ctx, dlq.Message{Topic: "ORDER_CREATED.dlq", Partition: 0, Offset: int64(i),
			OriginalTopic: "ORDER_CREATED", ConsumerGroup: "inventory", ExceptionClass: "error", ExceptionMessage: msg,
			Fingerprint: fp, ErrorPattern: pattern, Timestamp: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}

	cfg := configOn(t, db)
	var out bytes.Buffer
	if err := dlqList(ctx, &Env{Config: cfg, Stdout: &out, Stderr: io.Discard}, []string{"--json"}); err != nil {
		t.Fatal(err)
	}
	var cli dlq.ListJSON
	if err := json.Unmarshal(out.Bytes(), &cli); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}

	h := httpapi.NewRouter(httpapi.RouterConfig{Logger: slog.New(slog.DiscardHandler)}, dlq.NewHandlers(store, nil).Routes())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/ops/dlq?limit=50", nil))
	var api dlq.ListJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &api); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v: %s", rec.Code, err, rec.Body.String())
	}

	if cli.Counts.Total != 3 || cli.Counts.New != 3 {
		t.Errorf("CLI counts %+v, want total 3, new 3", cli.Counts)
	}
	var groupTotal, groupNew int64
	for _, g := range cli.Groups {
		groupTotal += g.Count
		groupNew += g.New
	}
	if groupTotal != cli.Counts.Total || groupNew != cli.Counts.New || int64(len(cli.Messages)) != cli.Counts.Total {
		t.Errorf("CLI counts %+v disagree with its groups (count %d, new %d) or messages (%d)", cli.Counts, groupTotal, groupNew, len(cli.Messages))
	}
	cliJSON, _ := json.Marshal(cli)
	apiJSON, _ := json.Marshal(api)
	if !bytes.Equal(cliJSON, apiJSON) {
		t.Errorf("CLI and API disagree:\nCLI %s\nAPI %s", cliJSON, apiJSON)
	}
}
