package app

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/auth/authtest"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/httpapi"
)

// servedRoute is one row of the role matrix: which server serves the route
// and the least role that may call it.
type servedRoute struct {
	server  string // "api" (TRACKOPS_HTTP_ADDR) or "connect" (TRACKOPS_CONNECT_ADDR)
	method  string
	pattern string
	role    httpapi.Role
}

const (
	public   = httpapi.RolePublic
	viewer   = httpapi.RoleViewer
	operator = httpapi.RoleOperator
	admin    = httpapi.RoleAdmin
)

// roleMatrix is every route a process with every role serves and the role
// it needs: the contract's "viewer reads; operator also writes orders and
// inventory; admin also ops (DLQ redrive, connectors, flags, users)", with
// health, metrics, login and the console open. A route added without a row
// here fails TestRoleMatrixOfEveryRoute, so nobody ships a route whose role
// was never decided.
var roleMatrix = []servedRoute{
	{"api", "GET", "/health", public},
	{"api", "GET", "/health/live", public},
	{"api", "GET", "/health/ready", public},
	{"api", "GET", "/metrics", public},
	{"api", "GET", "/console/", public},
	{"api", "GET", "/{$}", public},
	{"api", "POST", "/api/v1/auth/login", public},

	{"api", "POST", "/api/v1/auth/logout", viewer},
	{"api", "GET", "/api/v1/auth/me", viewer},
	{"api", "GET", "/api/v1/auth/apikeys", admin},
	{"api", "POST", "/api/v1/auth/apikeys", admin},
	{"api", "DELETE", "/api/v1/auth/apikeys/{id}", admin},
	{"api", "GET", "/api/v1/users", admin},
	{"api", "POST", "/api/v1/users", admin},

	{"api", "POST", "/api/v1/orders", operator},
	{"api", "GET", "/api/v1/orders", viewer},
	{"api", "GET", "/api/v1/orders/{id}", viewer},
	{"api", "PATCH", "/api/v1/orders/{id}/status", operator},
	{"api", "POST", "/api/v1/orders/{id}/cancel", operator},
	{"api", "GET", "/api/v1/orders/{id}/history", viewer},

	{"api", "GET", "/api/v1/inventory", viewer},
	{"api", "GET", "/api/v1/inventory/{sku}", viewer},
	{"api", "PUT", "/api/v1/inventory/{sku}", operator},
	{"api", "POST", "/api/v1/inventory/{sku}/adjust", operator},
	{"api", "GET", "/api/v1/inventory/{sku}/reservations", viewer},

	{"api", "GET", "/api/v1/ops/audit", admin},
	{"api", "GET", "/api/v1/ops/topics", operator},
	{"api", "GET", "/api/v1/ops/consumer-groups", operator},
	{"api", "GET", "/api/v1/ops/outbox", viewer},
	{"api", "POST", "/api/v1/ops/outbox/{id}/retry", admin},
	{"api", "GET", "/api/v1/ops/dlq", viewer},
	{"api", "GET", "/api/v1/ops/dlq/{id}", viewer},
	{"api", "POST", "/api/v1/ops/dlq/replay", admin},
	{"api", "POST", "/api/v1/ops/dlq/{id}/discard", admin},
	{"api", "GET", "/api/v1/ops/cache", operator},
	{"api", "GET", "/api/v1/ops/flags", operator},
	{"api", "GET", "/api/v1/ops/flags/{name}", operator},
	{"api", "PUT", "/api/v1/ops/flags/{name}", admin},
	{"api", "GET", "/api/v1/ops/config", operator},
	{"api", "GET", "/api/v1/ops/config/{name}", operator},
	{"api", "PUT", "/api/v1/ops/config/{name}", admin},
	{"api", "GET", "/api/v1/ops/cdc", operator},
	{"api", "POST", "/api/v1/ops/cdc/connectors/{name}/snapshots", admin},
	{"api", "DELETE", "/api/v1/ops/cdc/connectors/{name}/snapshots", admin},
	{"api", "GET", "/api/v1/orders/{id}/journey", viewer},
	{"api", "POST", "/api/v1/ops/topics", admin},
	{"api", "GET", "/api/v1/ops/topics/{topic}", operator},
	{"api", "GET", "/api/v1/ops/topics/{topic}/messages", operator},
	{"api", "POST", "/api/v1/ops/topics/{topic}/messages", admin},
	{"api", "GET", "/api/v1/ops/consumer-groups/{group}", operator},
	{"api", "POST", "/api/v1/ops/consumer-groups/{group}/offsets", admin},
	{"api", "GET", "/api/v1/ops/orders", viewer},
	{"api", "GET", "/api/v1/ops/stock", viewer},
	{"api", "GET", "/api/v1/ops/overview", viewer},
	{"api", "POST", "/api/v1/ops/cache/evict", admin},

	// The Kafka Connect REST API again on the platform's port, for the
	// console: the same roles, validation (which changes nothing) for
	// operators.
	{"api", "PUT", "/api/v1/ops/connect/connector-plugins/{plugin}/config/validate", operator},
	{"api", "GET", "/api/v1/ops/connect/connectors", operator},
	{"api", "POST", "/api/v1/ops/connect/connectors", admin},
	{"api", "PUT", "/api/v1/ops/connect/connectors", admin},
	{"api", "DELETE", "/api/v1/ops/connect/connectors", admin},
	{"api", "GET", "/api/v1/ops/connect/connectors/{name}", operator},
	{"api", "POST", "/api/v1/ops/connect/connectors/{name}", admin},
	{"api", "PUT", "/api/v1/ops/connect/connectors/{name}", admin},
	{"api", "DELETE", "/api/v1/ops/connect/connectors/{name}", admin},
	{"api", "GET", "/api/v1/ops/connect/connectors/{name}/{rest...}", operator},
	{"api", "POST", "/api/v1/ops/connect/connectors/{name}/{rest...}", admin},
	{"api", "PUT", "/api/v1/ops/connect/connectors/{name}/{rest...}", admin},
	{"api", "DELETE", "/api/v1/ops/connect/connectors/{name}/{rest...}", admin},
	{"api", "GET", "/api/v1/ops/connect/connector-plugins", operator},
	{"api", "POST", "/api/v1/ops/connect/connector-plugins", admin},
	{"api", "PUT", "/api/v1/ops/connect/connector-plugins", admin},
	{"api", "DELETE", "/api/v1/ops/connect/connector-plugins", admin},
	{"api", "GET", "/api/v1/ops/connect/connector-plugins/{rest...}", operator},
	{"api", "POST", "/api/v1/ops/connect/connector-plugins/{rest...}", admin},
	{"api", "PUT", "/api/v1/ops/connect/connector-plugins/{rest...}", admin},
	{"api", "DELETE", "/api/v1/ops/connect/connector-plugins/{rest...}", admin},

	// Kafka Connect REST keeps its own paths: reading needs operator,
	// changing connectors admin.
	{"connect", "GET", "/", operator},
	{"connect", "GET", "/connectors", operator},
	{"connect", "POST", "/connectors", admin},
	{"connect", "PUT", "/connectors", admin},
	{"connect", "DELETE", "/connectors", admin},
	{"connect", "GET", "/connectors/{name}", operator},
	{"connect", "POST", "/connectors/{name}", admin},
	{"connect", "PUT", "/connectors/{name}", admin},
	{"connect", "DELETE", "/connectors/{name}", admin},
	{"connect", "GET", "/connectors/{name}/{rest...}", operator},
	{"connect", "POST", "/connectors/{name}/{rest...}", admin},
	{"connect", "PUT", "/connectors/{name}/{rest...}", admin},
	{"connect", "DELETE", "/connectors/{name}/{rest...}", admin},
	{"connect", "GET", "/connector-plugins", operator},
	{"connect", "POST", "/connector-plugins", admin},
	{"connect", "PUT", "/connector-plugins", admin},
	{"connect", "DELETE", "/connector-plugins", admin},
	{"connect", "GET", "/connector-plugins/{rest...}", operator},
	{"connect", "POST", "/connector-plugins/{rest...}", admin},
	{"connect", "PUT", "/connector-plugins/{rest...}", admin},
	{"connect", "DELETE", "/connector-plugins/{rest...}", admin},
	// Any other path or method: Kafka Connect's 404 or 405, after authentication.
	{"connect", "POST", "/{rest...}", admin},
	{"connect", "PUT", "/{rest...}", admin},
	{"connect", "DELETE", "/{rest...}", admin},
	{"connect", "PATCH", "/{rest...}", admin},
	{"connect", "OPTIONS", "/{rest...}", admin},
}

// TestRoleMatrixOfEveryRoute proves, over the full app, that the routes
// served are exactly the table's with the table's roles, and for every one:
// 401 without a token or with a malformed one, 403 for every role below the
// one it needs (authtest.RoleMatrix), and for the role it needs neither 401,
// 403 nor a 5xx. Public routes answer without a token.
func TestRoleMatrixOfEveryRoute(t *testing.T) {
	// RoleMatrix sends two unauthenticated requests per route from one
	// address, which the per-address limit (40 burst) would answer with 429
	// long before the table ends; the limit has its own tests.
	t.Parallel()
	fa := startFullApp(t, slog.New(slog.DiscardHandler), func(c *config.Config) { c.Limits.IP = config.Rate{} })
	tokens := map[httpapi.Role]string{
		viewer:   fa.key(t, "matrix-viewer", viewer),
		operator: fa.key(t, "matrix-operator", operator),
		admin:    fa.key(t, "matrix-admin", admin),
	}

	served := map[string][]httpapi.Route{"api": fa.routes, "connect": connectRoutes(nil)}
	served["api"] = append(served["api"], httpapi.Route{Method: "GET", Pattern: "/metrics", Role: public}) // added by Handler
	want := map[string]servedRoute{}
	for _, r := range roleMatrix {
		want[r.server+" "+r.method+" "+r.pattern] = r
	}
	got := map[string]httpapi.Route{}
	for server, routes := range served {
		for _, r := range routes {
			k := server + " " + r.Method + " " + r.Pattern
			if _, dup := got[k]; dup {
				t.Errorf("%s is registered twice", k)
			}
			got[k] = r
		}
	}
	for _, k := range sortedKeys(got) {
		w, ok := want[k]
		if !ok {
			t.Errorf("%s (role %q) is served but not in the role matrix", k, got[k].Role)
			continue
		}
		if got[k].Role != w.role {
			t.Errorf("%s needs role %q, the matrix says %q", k, got[k].Role, w.role)
		}
	}
	for _, k := range sortedKeys(want) {
		if _, ok := got[k]; !ok {
			t.Errorf("%s is in the role matrix but not served", k)
		}
	}

	// The Kafka Connect REST API is reached on its own listener, as a
	// client would; the API through the app's handler.
	connectURL, err := url.Parse(fa.connectBase)
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]http.Handler{"api": fa.Handler(), "connect": httputil.NewSingleHostReverseProxy(connectURL)}
	if code := send(handlers["connect"], tokens[operator], http.MethodGet, "/connectors"); code != http.StatusOK {
		t.Fatalf("GET /connectors on the Connect listener as operator: %d, want 200", code)
	}
	for _, server := range []string{"api", "connect"} {
		t.Run(server, func(t *testing.T) {
			authtest.RoleMatrix(t, handlers[server], served[server], tokens)
			for _, r := range roleMatrix {
				if r.server != server {
					continue
				}
				token := tokens[r.role] // "" for public routes
				code := send(handlers[server], token, r.method, authtest.Path(r.pattern))
				if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
					t.Errorf("%s %s as %q: status %d, want the handler's answer (not 401, 403 or 5xx)",
						r.method, r.pattern, r.role, code)
				}
			}
		})
	}
}

// send is one request as authtest.RoleMatrix sends it: an empty JSON object
// as the body of mutations.
func send(h http.Handler, token, method, path string) int {
	body := ""
	if method != http.MethodGet && method != http.MethodHead {
		body = "{}"
	}
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
