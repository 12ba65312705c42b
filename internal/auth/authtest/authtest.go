// Package authtest checks a router's role matrix: every protected route
// answers 401 without a token and 403 to every role below the one it needs.
package authtest

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/httpapi"
)

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// Path turns a route pattern into a path that matches it, every wildcard
// replaced by a syntactically plausible value.
func Path(pattern string) string {
	return wildcard.ReplaceAllStringFunc(pattern, func(w string) string {
		if strings.HasSuffix(w, "...}") {
			return "x"
		}
		return "00000000-0000-4000-8000-000000000000"
	})
}

// RoleMatrix sends each route of routes (except public ones) through h
// without a token, with a malformed token, and with the token of every role
// that ranks below the route's role, and fails t unless those answer 401,
// 401 and 403. tokens maps each role to a bearer token holding it.
func RoleMatrix(t *testing.T, h http.Handler, routes []httpapi.Route, tokens map[httpapi.Role]string) {
	t.Helper()
	roles := []httpapi.Role{httpapi.RoleViewer, httpapi.RoleOperator, httpapi.RoleAdmin}
	checked := 0
	for _, rt := range routes {
		if rt.Role == httpapi.RolePublic {
			continue
		}
		path := Path(rt.Pattern)
		do := func(token string) *httptest.ResponseRecorder {
			var body *strings.Reader
			if rt.Method != http.MethodGet && rt.Method != http.MethodHead {
				body = strings.NewReader("{}")
			} else {
				body = strings.NewReader("")
			}
			req := httptest.NewRequest(rt.Method, path, body)
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		name := rt.Method + " " + rt.Pattern
		if rec := do(""); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without a token: status %d, want 401", name, rec.Code)
		} else if rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a token: 401 lacks WWW-Authenticate", name)
		}
		if rec := do("not-a-token"); rec.Code != http.StatusUnauthorized {
			t.Errorf("%s with a malformed token: status %d, want 401", name, rec.Code)
		}
		for _, role := range roles {
			if role.Rank() >= rt.Role.Rank() {
				continue
			}
			tok, ok := tokens[role]
			if !ok {
				t.Fatalf("no token for role %s", role)
			}
			if rec := do(tok); rec.Code != http.StatusForbidden {
				t.Errorf("%s as %s: status %d, want 403", name, role, rec.Code)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Errorf("no protected route to check")
	}
}
