package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// tokenAuth accepts "Bearer <role>" as a principal of that role.
type tokenAuth struct{}

func (tokenAuth) Authenticate(r *http.Request) (Principal, error) {
	role, err := ParseRole(r.Header.Get("Authorization")[min(7, len(r.Header.Get("Authorization"))):])
	if err != nil {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{ID: string(role), Name: string(role), Kind: "user", Role: role}, nil
}

// budget allows n requests per key.
type budget struct {
	mu   sync.Mutex
	n    int
	used map[string]int
}

func (b *budget) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used[key]++
	return b.used[key] <= b.n, 3 * time.Second, nil
}

type auditLog struct {
	mu      sync.Mutex
	entries []AuditEntry
}

func (a *auditLog) Record(_ context.Context, e AuditEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
}

func TestGuardSecurity(t *testing.T) {
	var seen Principal
	routes := []Route{
		{Method: "POST", Pattern: "/public", Role: RolePublic, Handler: func(w http.ResponseWriter, r *http.Request) {
			seen = PrincipalFrom(r.Context())
			SetPrincipal(w, Principal{Name: "alice", Kind: "user"})
			w.WriteHeader(http.StatusNoContent)
		}},
		{Method: "POST", Pattern: "/admin", Role: RoleAdmin, Handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}},
		{Method: "POST", Pattern: "/panic", Role: RoleViewer, Handler: func(w http.ResponseWriter, r *http.Request) {
			panic("boom")
		}},
	}
	audit := &auditLog{}
	limits := &budget{n: 2, used: map[string]int{}}
	h := NewRouter(RouterConfig{Auth: tokenAuth{}, Limiter: limits, Auditor: audit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, routes)
	do := func(path, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, nil)
		req.RemoteAddr = "192.0.2.9:1234"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	if rec := do("/public", ""); rec.Code != 204 {
		t.Fatalf("public: %d", rec.Code)
	}
	if seen.Role != RolePublic || seen.Role.Allows(RoleViewer) {
		t.Errorf("a public route's handler sees principal %+v; it must hold no role", seen)
	}
	if rec := do("/admin", "viewer"); rec.Code != 403 {
		t.Errorf("viewer on admin route: %d", rec.Code)
	}
	if rec := do("/admin", "admin"); rec.Code != 204 {
		t.Errorf("admin: %d", rec.Code)
	}
	// Two failed authentications use up the address's budget of 2 (the public
	// call spent one already), so the second is a 429.
	if rec := do("/admin", "nonsense"); rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("bad token: %d %q", rec.Code, rec.Header().Get("WWW-Authenticate"))
	}
	rec := do("/admin", "nonsense")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("repeated bad token: %d Retry-After %q, want 429 and 3", rec.Code, rec.Header().Get("Retry-After"))
	}

	if rec := do("/panic", "operator"); rec.Code != 500 {
		t.Errorf("panicking handler: %d", rec.Code)
	}

	// Every mutation attempt is audited once, refused ones included, under
	// the principal the handler named or the one authenticated.
	want := []struct {
		actor  string
		status int
	}{{"user:alice", 204}, {"user:viewer", 403}, {"user:admin", 204}, {"anonymous", 401}, {"anonymous", 429}, {"user:operator", 500}}
	if len(audit.entries) != len(want) {
		t.Fatalf("audit entries: %+v", audit.entries)
	}
	for i, w := range want {
		if e := audit.entries[i]; e.Principal.Actor() != w.actor || e.Status != w.status || e.ClientIP != "192.0.2.9" {
			t.Errorf("entry %d = %s %d, want %s %d", i, e.Principal.Actor(), e.Status, w.actor, w.status)
		}
	}
}
