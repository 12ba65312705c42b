package connect

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/trackops/trackops/internal/httpapi"
)

// Challenges are the WWW-Authenticate values of a 401 on the Connect port:
// Basic, which Kafka Connect clients answer (BasicAuthSecurityRestExtension),
// and Bearer.
var Challenges = []string{`Basic realm="trackops-connect", charset="UTF-8"`, `Bearer realm="trackops"`}

// BasicAuth lets Kafka Connect clients sign in the way Kafka Connect's
// BasicAuthSecurityRestExtension expects: HTTP Basic credentials whose
// password is a TrackOps API key (or session token). The username is not
// checked — any value, the key's name for instance, is accepted — because
// the key alone identifies its holder and its role; Bearer tokens work as
// on the main API.
func BasicAuth(inner httpapi.Authenticator) httpapi.Authenticator {
	return basicAuth{inner: inner}
}

type basicAuth struct{ inner httpapi.Authenticator }

// maxBasicLen bounds the header decoded; real ones are ~70 bytes.
const maxBasicLen = 1024

func (b basicAuth) Authenticate(r *http.Request) (httpapi.Principal, error) {
	h := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return b.inner.Authenticate(r)
	}
	if len(cred) > maxBasicLen {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	_, password, ok := strings.Cut(string(raw), ":")
	if !ok || password == "" {
		return httpapi.Principal{}, httpapi.ErrUnauthenticated
	}
	// The inner authenticator reads Bearer tokens; hand it the password as one.
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+password)
	return b.inner.Authenticate(r2)
}

// WriteError writes Kafka Connect's error body, {"error_code": <status>,
// "message": "..."}, for every error on the Connect port — the router's
// own 401, 403, 404, 429 and 500 included.
func WriteError(w http.ResponseWriter, _ *http.Request, status int, message string) {
	writeError(w, status, message)
}
