package health_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
)

// tokens is an Authenticator knowing one token per role.
type tokens map[string]httpapi.Role

func (tk tokens) Authenticate(r *http.Request) (httpapi.Principal, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	role, known := tk[tok]
	if !ok || !known {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	return httpapi.Principal{ID: tok, Name: tok, Kind: "apikey", Role: role}, nil
}

// TestHealthDetailsWhenAuthorized follows Actuator's show-details:
// when-authorized: anonymous callers (and callers with a bad token) get
// the status alone, with no component names, while any signed-in role gets
// every component with its details; /health/live and /health/ready stay
// open to probes without a token.
func TestHealthDetailsWhenAuthorized(t *testing.T) {
	t.Parallel()
	secret := map[string]any{"databaseName": "orders_prod", "brokers": []any{"kafka-1:9092"}}
	c := health.NewChecker(
		health.Func{ComponentName: "db", IsCritical: true, Fn: func(context.Context) health.Component {
			return health.Component{Status: health.Up, Details: secret}
		}},
		fixed("redis", false, health.Down),
	)
	h := httpapi.NewRouter(httpapi.RouterConfig{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Auth:   tokens{"v": httpapi.RoleViewer, "o": httpapi.RoleOperator, "a": httpapi.RoleAdmin},
	}, c.Routes())
	call := func(path, token string) (int, string) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}

	for _, token := range []string{"", "not-a-token"} {
		code, body := call("/health", token)
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if code != 200 || len(got) != 1 || got["status"] != string(health.Degraded) {
			t.Errorf("anonymous /health (token %q) = %d %s, want 200 and the status alone", token, code, body)
		}
		for _, path := range []string{"/health/live", "/health/ready"} {
			if code, body := call(path, token); code != 200 || strings.Contains(body, "orders_prod") {
				t.Errorf("anonymous %s = %d %s, want 200 without details", path, code, body)
			}
		}
	}
	for _, token := range []string{"v", "o", "a"} {
		code, body := call("/health", token)
		var got health.Report
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if code != 200 || got.Status != health.Degraded || got.Components["db"].Details["databaseName"] != "orders_prod" ||
			got.Components["redis"].Status != health.Down {
			t.Errorf("/health signed in as %s = %d %s, want every component with details", token, code, body)
		}
	}
}
