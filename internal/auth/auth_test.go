package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/audit"
	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/auth/authtest"
	"github.com/trackops/trackops/internal/cache"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/logging"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/testfix"
)

// fastPasswords keep argon2id cheap in tests; production uses the defaults.
var fastPasswords = auth.PasswordParams{Memory: 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

const password = "correct horse battery staple"

type env struct {
	t       *testing.T
	db      *postgrestest.Database
	stores  *cache.Stores
	svc     *auth.Service
	limiter *auth.RateLimiter
	audit   *audit.Writer
	h       http.Handler
	logs    *testfix.TailBuffer
}

// newEnv wires the service, limiter and audit log into the real router on a
// private database and Redis key prefix, logging through the masking handler
// into a buffer the test can inspect.
func newEnv(t *testing.T, limits auth.Limits) *env {
	t.Helper()
	return newEnvOn(t, limits, cachetest.New(t))
}

// newEnvOn is newEnv with the Redis stores given (a Redis Cluster's, say).
func newEnvOn(t *testing.T, limits auth.Limits, stores *cache.Stores) *env {
	t.Helper()
	e := &env{t: t, db: postgrestest.New(t), stores: stores, logs: &testfix.TailBuffer{}}
	logger := slog.New(logging.Mask(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e.limiter = auth.NewRateLimiter(e.stores.Sessions, limits, logger, nil)
	e.svc = auth.NewService(e.db.Pool, e.stores.Sessions, auth.Options{Logger: logger, Password: fastPasswords, Limiter: e.limiter})
	e.audit = audit.NewWriter(e.db.Pool, audit.WriterOptions{Logger: logger, FlushInterval: 20 * time.Millisecond})
	routes := append(e.svc.Routes(), audit.NewReader(e.db.Pool).Routes()...)
	e.h = httpapi.NewRouter(httpapi.RouterConfig{Logger: logger, Auth: e.svc, Limiter: e.limiter, Auditor: e.audit}, routes)
	t.Cleanup(func() {
		_ = e.audit.Close(context.Background())
		e.svc.Close()
	})
	return e
}

// noLimits lets everything through, for tests about other things.
var noLimits = auth.Limits{}

type response struct {
	code int
	hdr  http.Header
	body []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (e *env) do(method, path, token string, body any) response {
	e.t.Helper()
	return e.doFrom("192.0.2.1:40000", method, path, token, body)
}

func (e *env) doFrom(remote, method, path, token string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = remote
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return response{code: rec.Code, hdr: rec.Header(), body: rec.Body.Bytes()}
}

func (e *env) user(name string, role httpapi.Role) {
	e.t.Helper()
	if _, err := e.svc.CreateUser(context.Background(), name, password, role); err != nil {
		e.t.Fatalf("create user %s: %v", name, err)
	}
}

func (e *env) login(name string) (string, time.Time) {
	e.t.Helper()
	r := e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": name, "password": password})
	if r.code != http.StatusOK {
		e.t.Fatalf("login %s: %d %s", name, r.code, r.body)
	}
	var lr auth.LoginResponse
	r.json(e.t, &lr)
	return lr.Token, lr.ExpiresAt
}

func (e *env) apiKey(role httpapi.Role) string {
	e.t.Helper()
	k, err := e.svc.CreateAPIKey(context.Background(), "key-"+string(role), role)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func TestLoginCreatesSlidingSessionInDB0(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	ctx := context.Background()
	e.user("alice", httpapi.RoleOperator)
	token, expires := e.login("alice")

	if n := len(token); n != 43 {
		t.Errorf("token length %d, want 43 (32 random bytes, base64url)", n)
	}
	if d := time.Until(expires); d <= 0 || d > 30*time.Minute {
		t.Errorf("expires_at %v is not within 30 minutes", expires)
	}
	rc := e.stores.Sessions.Client().(*redis.Client)
	if db := rc.Options().DB; db != 0 {
		t.Fatalf("sessions store is db %d, want 0", db)
	}
	key := e.svc.SessionKey(token)
	if strings.Contains(key, token) {
		t.Fatalf("session key %q contains the token itself", key)
	}
	ttl, err := rc.TTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > 1800*time.Second {
		t.Fatalf("session TTL = %v (err %v), want 0 < TTL <= 1800 s", ttl, err)
	}
	raw, _ := rc.Get(ctx, key).Result()
	if strings.Contains(raw, password) || strings.Contains(raw, token) {
		t.Fatalf("session value holds a secret: %s", raw)
	}

	// Sliding: shorten the TTL, use the session, and it is back to the full 30 minutes.
	rc.Expire(ctx, key, 60*time.Second)
	r := e.do("GET", "/api/v1/auth/me", token, nil)
	if r.code != http.StatusOK {
		t.Fatalf("me: %d %s", r.code, r.body)
	}
	var me auth.MeResponse
	r.json(t, &me)
	if me.Name != "alice" || me.Role != httpapi.RoleOperator || me.Kind != "user" {
		t.Errorf("me = %+v", me)
	}
	if ttl := rc.TTL(ctx, key).Val(); ttl <= 60*time.Second || ttl > 1800*time.Second {
		t.Errorf("TTL after use = %v, want slid back to (60 s, 1800 s]", ttl)
	}

	// Logout deletes the key; the token is dead afterwards.
	if r := e.do("POST", "/api/v1/auth/logout", token, nil); r.code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.code, r.body)
	}
	if n := rc.Exists(ctx, key).Val(); n != 0 {
		t.Errorf("session key still exists after logout")
	}
	if r := e.do("GET", "/api/v1/auth/me", token, nil); r.code != http.StatusUnauthorized {
		t.Errorf("me after logout: %d, want 401", r.code)
	}
}

func TestExpiredSessionIsRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	e.user("bob", httpapi.RoleViewer)
	token, _ := e.login("bob")
	e.stores.Sessions.Client().Del(context.Background(), e.svc.SessionKey(token)) // what expiry does
	if r := e.do("GET", "/api/v1/auth/me", token, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("expired session: %d, want 401", r.code)
	}
}

func TestLoginFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	e.user("carol", httpapi.RoleViewer)
	cases := []struct {
		name string
		body any
		want int
	}{
		{"wrong password", map[string]string{"username": "carol", "password": "wrong password"}, 401},
		{"unknown user", map[string]string{"username": "nobody", "password": password}, 401},
		{"username is case-insensitive but password is not", map[string]string{"username": "CAROL", "password": strings.ToUpper(password)}, 401},
		{"empty password", map[string]string{"username": "carol", "password": ""}, 422},
		{"bad username", map[string]string{"username": "a b", "password": password}, 422},
		{"unknown field", `{"username":"carol","password":"x","admin":true}`, 400},
		{"not json", `username=carol`, 400},
		{"two objects", `{"username":"carol","password":"x"}{}`, 400},
		{"huge password", map[string]string{"username": "carol", "password": strings.Repeat("x", 2000)}, 422},
	}
	for _, c := range cases {
		r := e.do("POST", "/api/v1/auth/login", "", c.body)
		if r.code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, r.code, c.want, r.body)
		}
		if ct := r.hdr.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
	// Unknown user and wrong password read the same, so usernames cannot be probed.
	a := e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "carol", "password": "wrong password"})
	b := e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "nobody", "password": "wrong password"})
	var pa, pb httpapi.Problem
	a.json(t, &pa)
	b.json(t, &pb)
	if pa.Detail != pb.Detail {
		t.Errorf("details differ: %q vs %q", pa.Detail, pb.Detail)
	}
	if _, err := e.svc.CreateUser(context.Background(), "Carol", password, httpapi.RoleAdmin); err != auth.ErrUserExists {
		t.Errorf("duplicate username differing in case: err %v, want ErrUserExists", err)
	}
	// A case-different spelling logs in to the same account.
	r := e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "CAROL", "password": password})
	if r.code != 200 {
		t.Errorf("login with CAROL: %d", r.code)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	ctx := context.Background()
	admin := e.apiKey(httpapi.RoleAdmin)
	if !strings.HasPrefix(admin, auth.APIKeyPrefix) || len(admin) != len(auth.APIKeyPrefix)+43 {
		t.Fatalf("key %q: want tok_ + 43 characters", admin)
	}
	var stored int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE position($1 in key_prefix || encode(key_hash,'escape')) > 0`, admin).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the plaintext key is stored (count %d, err %v)", stored, err)
	}

	// Created over the API by an admin, shown once.
	r := e.do("POST", "/api/v1/auth/apikeys", admin, map[string]string{"name": "ci", "role": "viewer"})
	if r.code != http.StatusCreated {
		t.Fatalf("create key: %d %s", r.code, r.body)
	}
	var created auth.CreatedKey
	r.json(t, &created)
	if created.Role != httpapi.RoleViewer || created.CreatedBy != "apikey:key-admin" || !strings.HasPrefix(created.Key, "tok_") {
		t.Errorf("created = %+v", created)
	}
	r = e.do("GET", "/api/v1/auth/me", created.Key, nil)
	var me auth.MeResponse
	r.json(t, &me)
	if r.code != 200 || me.Kind != "apikey" || me.Role != httpapi.RoleViewer || me.ID != created.ID {
		t.Fatalf("me with new key: %d %+v", r.code, me)
	}
	// Viewers may not manage keys.
	if r := e.do("GET", "/api/v1/auth/apikeys", created.Key, nil); r.code != http.StatusForbidden {
		t.Errorf("viewer lists keys: %d, want 403", r.code)
	}
	// The listing never shows a secret.
	r = e.do("GET", "/api/v1/auth/apikeys", admin, nil)
	if r.code != 200 || bytes.Contains(r.body, []byte(created.Key)) || bytes.Contains(r.body, []byte(admin)) {
		t.Fatalf("list keys: %d %s", r.code, r.body)
	}
	if bytes.Contains(r.body, []byte(`"key"`)) {
		t.Errorf("list keys has a key field: %s", r.body)
	}

	// Revoked: rejected at once on this instance.
	if r := e.do("DELETE", "/api/v1/auth/apikeys/"+created.ID, admin, nil); r.code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/api/v1/auth/me", created.Key, nil); r.code != http.StatusUnauthorized {
		t.Errorf("revoked key: %d, want 401", r.code)
	}
	if r := e.do("DELETE", "/api/v1/auth/apikeys/00000000-0000-4000-8000-000000000000", admin, nil); r.code != http.StatusNotFound {
		t.Errorf("revoke unknown: %d, want 404", r.code)
	}
	if r := e.do("DELETE", "/api/v1/auth/apikeys/not-a-uuid", admin, nil); r.code != http.StatusNotFound {
		t.Errorf("revoke malformed id: %d, want 404", r.code)
	}
	// A key that looks right but was never issued.
	if r := e.do("GET", "/api/v1/auth/me", "tok_"+strings.Repeat("A", 43), nil); r.code != http.StatusUnauthorized {
		t.Errorf("unknown key: %d, want 401", r.code)
	}
	// Logout is for sessions only.
	if r := e.do("POST", "/api/v1/auth/logout", admin, nil); r.code != http.StatusBadRequest {
		t.Errorf("logout with an API key: %d, want 400", r.code)
	}

	// last_used_at is recorded (in the background; Close waits for it).
	e.svc.Close()
	var used int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL`).Scan(&used); err != nil || used != 2 {
		t.Errorf("keys with last_used_at: %d (err %v), want 2", used, err)
	}
	keys, err := e.svc.ListAPIKeys(ctx)
	if err != nil || len(keys) != 2 || !keys[0].Revoked || keys[1].Revoked {
		t.Errorf("ListAPIKeys = %+v, %v", keys, err)
	}
}

func TestUsersAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	admin := e.apiKey(httpapi.RoleAdmin)
	r := e.do("POST", "/api/v1/users", admin, map[string]string{"username": "dave", "password": password, "role": "operator"})
	if r.code != http.StatusCreated {
		t.Fatalf("create user: %d %s", r.code, r.body)
	}
	if bytes.Contains(r.body, []byte(password)) || bytes.Contains(r.body, []byte("argon2")) {
		t.Fatalf("response leaks the password or its hash: %s", r.body)
	}
	cases := []struct {
		body any
		want int
	}{
		{map[string]string{"username": "dave", "password": password, "role": "viewer"}, 409},
		{map[string]string{"username": "erin", "password": "short", "role": "viewer"}, 422},
		{map[string]string{"username": "erin", "password": password, "role": "root"}, 422},
		{map[string]any{"username": "erin", "password": password, "role": "viewer", "extra": 1}, 400},
		{map[string]any{"username": 7, "password": password, "role": "viewer"}, 400},
	}
	for _, c := range cases {
		if r := e.do("POST", "/api/v1/users", admin, c.body); r.code != c.want {
			t.Errorf("create %v: %d, want %d (%s)", c.body, r.code, c.want, r.body)
		}
	}
	r = e.do("GET", "/api/v1/users", admin, nil)
	var list struct{ Items []auth.User }
	r.json(t, &list)
	if r.code != 200 || len(list.Items) != 1 || list.Items[0].Username != "dave" || list.Items[0].Role != httpapi.RoleOperator {
		t.Fatalf("list users: %d %s", r.code, r.body)
	}
	token, _ := e.login("dave")
	if r := e.do("GET", "/api/v1/users", token, nil); r.code != http.StatusForbidden {
		t.Errorf("operator lists users: %d, want 403", r.code)
	}
}

func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	tokens := map[httpapi.Role]string{}
	for _, role := range []httpapi.Role{httpapi.RoleViewer, httpapi.RoleOperator, httpapi.RoleAdmin} {
		e.user("user-"+string(role), role)
		tokens[role], _ = e.login("user-" + string(role))
	}
	routes := append(e.svc.Routes(), audit.NewReader(e.db.Pool).Routes()...)
	authtest.RoleMatrix(t, e.h, routes, tokens)
	// And each role may call what it should: viewer reads itself, admin reads users.
	if r := e.do("GET", "/api/v1/auth/me", tokens[httpapi.RoleViewer], nil); r.code != 200 {
		t.Errorf("viewer me: %d", r.code)
	}
	if r := e.do("GET", "/api/v1/ops/audit", tokens[httpapi.RoleAdmin], nil); r.code != 200 {
		t.Errorf("admin audit: %d %s", r.code, r.body)
	}
}

func TestRateLimitPerPrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.Limits{PerPrincipal: redis_rate.Limit{Rate: 3, Burst: 3, Period: time.Minute}})
	key := e.apiKey(httpapi.RoleViewer)
	other := e.apiKey(httpapi.RoleViewer)
	for i := 0; i < 3; i++ {
		if r := e.do("GET", "/api/v1/auth/me", key, nil); r.code != 200 {
			t.Fatalf("request %d: %d", i+1, r.code)
		}
	}
	r := e.do("GET", "/api/v1/auth/me", key, nil)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("4th request: %d, want 429", r.code)
	}
	if ra := r.hdr.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	// Budgets are per principal.
	if r := e.do("GET", "/api/v1/auth/me", other, nil); r.code != 200 {
		t.Errorf("other key: %d, want 200", r.code)
	}
	// The counters live in the sessions store (db 0) under the store's prefix.
	keys, _ := e.stores.Sessions.Client().Keys(context.Background(), "rate:"+e.stores.Sessions.Key("ratelimit", "principal", "*")).Result()
	if len(keys) != 2 {
		t.Errorf("rate-limit keys in db 0: %v, want 2", keys)
	}
}

func TestRateLimitPerAddressAndFailedAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.Limits{PerIP: redis_rate.Limit{Rate: 2, Burst: 2, Period: time.Minute}})
	bogus := "tok_" + strings.Repeat("B", 42) + "A"
	// Failed authentications spend the address's budget...
	for i := 0; i < 2; i++ {
		if r := e.doFrom("198.51.100.7:1", "GET", "/api/v1/auth/me", bogus, nil); r.code != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, r.code)
		}
	}
	r := e.doFrom("198.51.100.7:1", "GET", "/api/v1/auth/me", bogus, nil)
	if r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("3rd guess: %d Retry-After %q, want 429 with Retry-After", r.code, r.hdr.Get("Retry-After"))
	}
	// ...and so do public routes, per address; IPv6 clients share their /64.
	for i, remote := range []string{"[2001:db8::1]:1", "[2001:db8::2]:1"} {
		if r := e.doFrom(remote, "POST", "/api/v1/auth/login", "", map[string]string{"username": "x", "password": "y"}); r.code != 401 {
			t.Fatalf("login %d from v6: %d", i, r.code)
		}
	}
	if r := e.doFrom("[2001:db8::3]:1", "POST", "/api/v1/auth/login", "", map[string]string{"username": "x", "password": "y"}); r.code != 429 {
		t.Errorf("3rd login from the same /64: %d, want 429", r.code)
	}
	if r := e.doFrom("[2001:db8:1::1]:1", "POST", "/api/v1/auth/login", "", map[string]string{"username": "x", "password": "y"}); r.code != 401 {
		t.Errorf("login from another /64: %d, want 401", r.code)
	}
}

func TestBruteForceLoginIsSlowedDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.Limits{Login: redis_rate.Limit{Rate: 3, Burst: 3, Period: time.Minute}})
	e.user("frank", httpapi.RoleViewer)
	bad := map[string]string{"username": "frank", "password": "guess guess"}
	good := map[string]string{"username": "frank", "password": password}
	for i := 0; i < 3; i++ {
		if r := e.doFrom("203.0.113.5:1", "POST", "/api/v1/auth/login", "", bad); r.code != 401 {
			t.Fatalf("bad login %d: %d, want 401", i+1, r.code)
		}
	}
	// Now even the right password waits: the attacker cannot tell it is right.
	r := e.doFrom("203.0.113.5:1", "POST", "/api/v1/auth/login", "", good)
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("4th attempt: %d, want 429", r.code)
	}
	if ra := r.hdr.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// The same account from another address, and another account from this one, are not affected.
	if r := e.doFrom("203.0.113.6:1", "POST", "/api/v1/auth/login", "", good); r.code != 200 {
		t.Errorf("other address: %d, want 200", r.code)
	}
	// A good login resets the count: two mistakes, success, then three mistakes are all 401.
	for i, body := range []any{bad, bad, good, bad, bad, bad} {
		want := 401
		if i == 2 {
			want = 200
		}
		if r := e.doFrom("203.0.113.9:1", "POST", "/api/v1/auth/login", "", body); r.code != want {
			t.Errorf("attempt %d: %d, want %d", i+1, r.code, want)
		}
	}
}

func TestAuditOneRowPerMutation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.Limits{PerPrincipal: redis_rate.Limit{Rate: 1000, Burst: 1000, Period: time.Second}})
	ctx := context.Background()
	e.user("gina", httpapi.RoleViewer)
	admin := e.apiKey(httpapi.RoleAdmin)
	token, _ := e.login("gina") // mutation 1: login (success, as user:gina)
	steps := []struct {
		method, path, token string
		body                any
		want                int
	}{
		{"POST", "/api/v1/auth/login", "", map[string]string{"username": "gina", "password": "nope nope"}, 401},
		{"POST", "/api/v1/users", admin, map[string]string{"username": "hank", "password": password, "role": "viewer"}, 201},
		{"POST", "/api/v1/users", token, map[string]string{"username": "ivan", "password": password, "role": "viewer"}, 403},
		{"POST", "/api/v1/users", "", map[string]string{"username": "ivan", "password": password, "role": "viewer"}, 401},
		{"POST", "/api/v1/auth/apikeys", admin, map[string]string{"name": "x", "role": "viewer"}, 201},
		{"GET", "/api/v1/users", admin, nil, 200}, // a read: not audited
		{"POST", "/api/v1/auth/logout", token, nil, 204},
	}
	for _, s := range steps {
		if r := e.do(s.method, s.path, s.token, s.body); r.code != s.want {
			t.Fatalf("%s %s: %d, want %d (%s)", s.method, s.path, r.code, s.want, r.body)
		}
	}
	if err := e.audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log`).Scan(&n)
	if n != 7 {
		t.Fatalf("audit rows = %d, want 7 (one per mutation)", n)
	}
	page, err := audit.NewReader(e.db.Pool).List(ctx, audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := make([]string, len(page.Items))
	for i, it := range page.Items {
		got[len(got)-1-i] = it.Actor + " " + it.Action + " " + it.Outcome
	}
	want := []string{
		"user:gina POST /api/v1/auth/login success",
		"user:gina POST /api/v1/auth/login denied",
		"apikey:key-admin POST /api/v1/users success",
		"user:gina POST /api/v1/users denied",
		"anonymous POST /api/v1/users denied",
		"apikey:key-admin POST /api/v1/auth/apikeys success",
		"user:gina POST /api/v1/auth/logout success",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	first := page.Items[len(page.Items)-1]
	if first.RequestID == "" || first.ClientIP != "192.0.2.1" || first.Target != "/api/v1/auth/login" || first.PrincipalKind != "user" {
		t.Errorf("row = %+v", first)
	}

	// Over the API: filters and keyset pages that neither skip nor repeat.
	r := e.do("GET", "/api/v1/ops/audit?outcome=denied", admin, nil)
	var denied audit.Page
	r.json(t, &denied)
	if r.code != 200 || len(denied.Items) != 3 {
		t.Errorf("denied rows: %d %s", r.code, r.body)
	}
	seen := map[int64]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		r := e.do("GET", "/api/v1/ops/audit?limit=3&cursor="+cursor, admin, nil)
		var p audit.Page
		r.json(t, &p)
		if r.code != 200 || pages > 5 {
			t.Fatalf("page %d: %d %s", pages, r.code, r.body)
		}
		for _, it := range p.Items {
			if seen[it.ID] {
				t.Fatalf("row %d repeated", it.ID)
			}
			seen[it.ID] = true
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != 7 {
		t.Errorf("paged through %d rows, want 7", len(seen))
	}
	for _, q := range []string{"limit=0", "limit=x", "status=999", "outcome=maybe", "since=yesterday", "cursor=zzz"} {
		if r := e.do("GET", "/api/v1/ops/audit?"+q, admin, nil); r.code != 422 {
			t.Errorf("?%s: %d, want 422", q, r.code)
		}
	}
}

// TestLogsHoldNoSecrets runs the flows that handle secrets, then searches
// everything logged (through the masking handler) for them.
func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, auth.Limits{Login: redis_rate.Limit{Rate: 1, Burst: 1, Period: time.Minute}})
	e.user("jane@example.com", httpapi.RoleAdmin)
	token, _ := e.login("jane@example.com")
	key := e.apiKey(httpapi.RoleViewer)
	e.do("GET", "/api/v1/auth/me", token, nil)
	e.do("GET", "/api/v1/auth/me", key, nil)
	e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "jane@example.com", "password": "hunter2 wrong"})
	e.do("POST", "/api/v1/auth/login", "", map[string]string{"username": "jane@example.com", "password": "hunter2 wrong"})
	e.do("POST", "/api/v1/users", token, map[string]string{"username": "kate", "password": "kate's secret pw", "role": "viewer"})
	e.do("POST", "/api/v1/auth/logout", token, nil)
	// Force an error path that logs: a session check with Redis gone.
	down := auth.NewService(e.db.Pool, deadStores(t).Sessions, auth.Options{Logger: slog.New(logging.Mask(slog.NewJSONHandler(e.logs, nil))), Password: fastPasswords})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if _, err := down.Authenticate(req); err == nil {
		t.Errorf("Authenticate with Redis down succeeded")
	}
	_ = e.audit.Flush(context.Background())
	logs := e.logs.String()
	if !strings.Contains(logs, "http request") {
		t.Fatalf("nothing was logged; the test proves nothing:\n%s", logs)
	}
	for _, secret := range []string{password, "hunter2", "kate's secret pw", token, key, strings.TrimPrefix(key, "tok_"), "jane@example.com"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// deadStores are stores on a port where no Redis listens.
func deadStores(t testing.TB) *cache.Stores {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := cache.Open("redis://"+addr, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
