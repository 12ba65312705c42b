// Package console serves the ops console: a static single-page app, embedded
// in the binary, that talks to the same /api/v1 endpoints as any client, with
// the operator's own token. It needs no build step and no external assets.
package console

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/trackops/trackops/internal/httpapi"
)

//go:embed static
var static embed.FS

// Static is the console's files (index.html, style.css, js/...).
func Static() fs.FS {
	sub, _ := fs.Sub(static, "static")
	return sub
}

// Routes serves the console under /console/ and sends / there. The pages are
// public; every call they make carries the operator's bearer token and is
// checked like any API call.
func Routes() []httpapi.Route {
	files := http.StripPrefix("/console/", http.FileServer(http.FS(Static())))
	serve := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		files.ServeHTTP(w, r)
	}
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/console/", Role: httpapi.RolePublic, Handler: serve},
		{Method: http.MethodGet, Pattern: "/{$}", Role: httpapi.RolePublic, Handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/console/", http.StatusFound)
		}},
	}
}
