package auth_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
	"github.com/trackops/trackops/internal/validation"
)

func TestPasswordHashing(t *testing.T) {
	t.Parallel()
	h1, err := auth.HashPassword(password, fastPasswords)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := auth.HashPassword(password, fastPasswords)
	if h1 == h2 {
		t.Errorf("two hashes of one password are equal: salts are not random")
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Errorf("hash %q does not encode its parameters", h1)
	}
	if ok, err := auth.VerifyPassword(password, h1); !ok || err != nil {
		t.Errorf("right password: %v %v", ok, err)
	}
	if ok, _ := auth.VerifyPassword(password+"x", h1); ok {
		t.Errorf("wrong password verified")
	}
	// Default parameters verify too (and old hashes keep verifying after a change).
	hd, _ := auth.HashPassword(password, auth.DefaultPasswordParams)
	if ok, _ := auth.VerifyPassword(password, hd); !ok {
		t.Errorf("default-parameter hash does not verify")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "$argon2id$v=19$m=1024,t=1,p=1$!!$!!"} {
		if ok, err := auth.VerifyPassword(password, bad); ok || err == nil {
			t.Errorf("malformed hash %q: ok=%v err=%v", bad, ok, err)
		}
	}
}

func TestParseBearer(t *testing.T) {
	t.Parallel()
	sess := strings.Repeat("a", 42) + "A"
	key := "tok_" + strings.Repeat("Z", 42) + "Q"
	cases := []struct {
		header string
		kind   auth.TokenKind
		ok     bool
	}{
		{"Bearer " + sess, auth.SessionToken, true},
		{"bearer " + sess, auth.SessionToken, true},
		{"BEARER  " + key, auth.APIKeyToken, true},
		{"Bearer " + key, auth.APIKeyToken, true},
		{"", 0, false},
		{"Bearer", 0, false},
		{"Bearer ", 0, false},
		{"Basic " + sess, 0, false},
		{"Bearer " + sess[:42], 0, false},
		{"Bearer " + sess + "a", 0, false},
		{"Bearer " + sess[:42] + "=", 0, false},
		{"Bearer " + sess[:42] + "+", 0, false},
		{"Bearer tok_" + sess[:42], 0, false},
		{"Bearer " + sess + " extra", 0, false},
		{"Bearer " + strings.Repeat("a", 600), 0, false},
	}
	for _, c := range cases {
		tok, kind, err := auth.ParseBearer(c.header)
		if (err == nil) != c.ok || kind != c.kind {
			t.Errorf("ParseBearer(%q) = %q, %v, %v", c.header, tok, kind, err)
		}
		if err != nil && !errors.Is(err, httpapi.ErrUnauthenticated) {
			t.Errorf("ParseBearer(%q) error %v is not ErrUnauthenticated", c.header, err)
		}
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	svc := auth.NewService(db.Pool, deadStores(t).Sessions, auth.Options{Password: fastPasswords})
	ctx := context.Background()
	var verrs validation.Errors
	if _, err := svc.CreateUser(ctx, "", "short", "root"); !errors.As(err, &verrs) || len(verrs) != 3 {
		t.Errorf("CreateUser with three bad fields: %v", err)
	}
	if _, err := svc.CreateAPIKey(ctx, " ", httpapi.RolePublic); !errors.As(err, &verrs) || len(verrs) != 2 {
		t.Errorf("CreateAPIKey with two bad fields: %v", err)
	}
}

// TestRedisDown: the limiter fails open and counts it; sessions answer 503
// (not 401, which would make clients throw their token away); API keys work.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	db := postgrestest.New(t)
	dead := deadStores(t)
	reg := prometheus.NewRegistry()
	lim := auth.NewRateLimiter(dead.Sessions, auth.DefaultLimits(), nil, auth.NewMetrics(reg))
	ok, _, err := lim.Allow(context.Background(), "ip:192.0.2.1")
	if !ok || err != nil {
		t.Errorf("Allow with Redis down = %v, %v; want fail open", ok, err)
	}
	if n := counter(t, reg, "trackops_ratelimit_errors_total"); n != 1 {
		t.Errorf("errors counter %v, want 1", n)
	}
	svc := auth.NewService(db.Pool, dead.Sessions, auth.Options{Password: fastPasswords, Limiter: lim})
	key, err := svc.CreateAPIKey(context.Background(), "k", httpapi.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	h := httpapi.NewRouter(httpapi.RouterConfig{Auth: svc, Limiter: lim}, svc.Routes())
	get := func(tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/api/v1/auth/me", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if rec := get(strings.Repeat("s", 43)); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("session with Redis down: %d, want 503", rec.Code)
	}
	if rec := get(key); rec.Code != http.StatusOK {
		t.Errorf("API key with Redis down: %d, want 200", rec.Code)
	}
	if _, err := svc.CreateUser(context.Background(), "lena", password, httpapi.RoleViewer); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/api/v1/auth/login", strings.NewReader(`{"username":"lena","password":"`+password+`"}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("login with Redis down: %d, want 503 with Retry-After", rec.Code)
	}
}

// counter sums the samples of the counter family name in g.
func counter(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func FuzzDecodeLoginRequest(f *testing.F) {
	for _, s := range []string{`{"username":"a","password":"b"}`, `{}`, `[]`, `null`, `{"username":1}`,
		`{"username":"a","password":"b","x":1}`, `{"username":"a"}{"password":"b"}`, "\xff", `{"username":"\u0000"}`} {
		f.Add([]byte(s), "application/json")
	}
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		req := httptest.NewRequest("POST", "/api/v1/auth/login", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		req.Body = http.MaxBytesReader(rec, req.Body, 1<<20)
		got, err := auth.DecodeLoginRequest(req)
		if err == nil {
			if got.Username == "" || got.Password == "" || len(got.Password) > auth.MaxPasswordLen {
				t.Fatalf("accepted invalid login %+v", got)
			}
			return
		}
		httpapi.WriteError(rec, req, err)
		if rec.Code < 400 || rec.Code > 499 {
			t.Fatalf("body %q: status %d, want 4xx (%v)", body, rec.Code, err)
		}
	})
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer " + strings.Repeat("a", 43), "Bearer tok_" + strings.Repeat("-", 43), "Basic x", "", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		tok, kind, err := auth.ParseBearer(header)
		if err != nil {
			if !errors.Is(err, httpapi.ErrUnauthenticated) || tok != "" || kind != 0 {
				t.Fatalf("failure %q: %q %v %v", header, tok, kind, err)
			}
			return
		}
		if !strings.Contains(header, tok) || (kind == auth.APIKeyToken) != strings.HasPrefix(tok, auth.APIKeyPrefix) {
			t.Fatalf("ParseBearer(%q) = %q, %v", header, tok, kind)
		}
		if len(tok) != 43 && len(tok) != 47 {
			t.Fatalf("token of length %d accepted", len(tok))
		}
	})
}

func BenchmarkAuthenticateAPIKey(b *testing.B) {
	db := postgrestest.New(b)
	svc := auth.NewService(db.Pool, deadStores(b).Sessions, auth.Options{Password: fastPasswords})
	defer svc.Close()
	key, err := svc.CreateAPIKey(context.Background(), "bench", httpapi.RoleOperator)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/api/v1/orders", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		for pb.Next() {
			if _, err := svc.Authenticate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAuthenticateSession(b *testing.B) {
	db := postgrestest.New(b)
	stores := cachetest.New(b)
	svc := auth.NewService(db.Pool, stores.Sessions, auth.Options{Password: fastPasswords})
	if _, err := svc.CreateUser(context.Background(), "bench", password, httpapi.RoleViewer); err != nil {
		b.Fatal(err)
	}
	token, _, _, err := svc.Login(context.Background(), "bench", password, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/api/v1/orders", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for pb.Next() {
			if _, err := svc.Authenticate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkVerifyPasswordDefault(b *testing.B) {
	h, _ := auth.HashPassword(password, auth.DefaultPasswordParams)
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := auth.VerifyPassword(password, h); !ok {
			b.Fatal("mismatch")
		}
	}
}
