package auth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/trackops/trackops/internal/auth"
	"github.com/trackops/trackops/internal/httpapi"
)

const bootstrapKey = "tok_" + "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"

// Several processes start at the same moment on a fresh database, each with
// the same bootstrap key: exactly one installs it, and it works as an admin
// key. Restarts change nothing; a revoked bootstrap key stays revoked.
func TestBootstrapAdminKeyOnceAcrossConcurrentStarts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	ctx := context.Background()
	// One Service per "process", all on the one database.
	const procs = 8
	outcomes := make([]auth.BootstrapOutcome, procs)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range procs {
		svc := auth.NewService(e.db.Pool, e.stores.Sessions, auth.Options{Password: fastPasswords})
		t.Cleanup(svc.Close)
		wg.Go(func() {
			<-start
			out, err := svc.EnsureBootstrapAdminKey(ctx, bootstrapKey)
			if err != nil {
				t.Error(err)
			}
			outcomes[i] = out
		})
	}
	close(start)
	wg.Wait()
	created := 0
	for _, o := range outcomes {
		switch o {
		case auth.BootstrapCreated:
			created++
		case auth.BootstrapAdminExists:
		default:
			t.Errorf("outcome %d", o)
		}
	}
	if created != 1 {
		t.Fatalf("%d processes installed the bootstrap key, want exactly 1 (%v)", created, outcomes)
	}
	var n int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE role = 'admin'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d admin keys (%v), want 1", n, err)
	}
	if r := e.do("GET", "/api/v1/auth/apikeys", bootstrapKey, nil); r.code != http.StatusOK {
		t.Fatalf("admin call with the bootstrap key: %d %s", r.code, r.body)
	}
	if r := e.do("GET", "/api/v1/auth/apikeys", bootstrapKey, nil); !strings.Contains(string(r.body), auth.BootstrapKeyName) {
		t.Fatalf("key list %s does not name %s", r.body, auth.BootstrapKeyName)
	}
	if out, err := e.svc.EnsureBootstrapAdminKey(ctx, bootstrapKey); out != auth.BootstrapAdminExists || err != nil {
		t.Fatalf("restart: %v, %v; want BootstrapAdminExists", out, err)
	}

	// Revoked, it is not brought back by the next start.
	keys, err := e.svc.ListAPIKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatal(keys, err)
	}
	if err := e.svc.RevokeAPIKey(ctx, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	if out, err := e.svc.EnsureBootstrapAdminKey(ctx, bootstrapKey); out != auth.BootstrapKeyRevoked || err != nil {
		t.Fatalf("start after revocation: %v, %v; want BootstrapKeyRevoked", out, err)
	}
	if r := e.do("GET", "/api/v1/auth/me", bootstrapKey, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("revoked bootstrap key: %d, want 401", r.code)
	}
}

// An existing admin key means the deployment is set up: the bootstrap key
// is not added.
func TestBootstrapAdminKeyNotAddedNextToAnAdmin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, noLimits)
	ctx := context.Background()
	admin := e.apiKey(httpapi.RoleAdmin)
	if out, err := e.svc.EnsureBootstrapAdminKey(ctx, bootstrapKey); out != auth.BootstrapAdminExists || err != nil {
		t.Fatalf("%v, %v; want BootstrapAdminExists", out, err)
	}
	if r := e.do("GET", "/api/v1/auth/me", bootstrapKey, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("bootstrap key next to an admin key: %d, want 401", r.code)
	}
	if r := e.do("GET", "/api/v1/auth/me", admin, nil); r.code != http.StatusOK {
		t.Fatalf("existing admin key: %d", r.code)
	}
	for _, bad := range []string{"", "hunter2", "tok_short", bootstrapKey[4:], bootstrapKey + "A"} {
		if _, err := e.svc.EnsureBootstrapAdminKey(ctx, bad); !errors.Is(err, auth.ErrBadBootstrapKey) {
			t.Errorf("key %q: %v, want ErrBadBootstrapKey", bad, err)
		}
	}
}
