package app

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/testfix"
)

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeTestCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := testfix.WriteCert(t.TempDir(), "trackops-test")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// tlsClient trusts exactly the certificate in certFile.
func tlsClient(t testing.TB, certFile string) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("test certificate not parsed")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// connectError is Kafka Connect's error body (its REST API's ErrorMessage:
// {"error_code": <HTTP status>, "message": "..."}).
type connectError struct {
	ErrorCode *int   `json:"error_code"`
	Message   string `json:"message"`
}

// TestConnectPortSecurityAsKafkaConnect checks the Connect port the way a
// stock Kafka Connect client uses it when the worker runs Kafka Connect's
// BasicAuthSecurityRestExtension: HTTPS when TLS is configured, HTTP Basic
// credentials (curl -u name:key) beside Bearer tokens, operator to read and
// admin to change, and every error — 401 and 403 included — in Kafka
// Connect's {"error_code","message"} shape.
func TestConnectPortSecurityAsKafkaConnect(t *testing.T) {
	t.Parallel()
	certFile, keyFile := writeTestCert(t)
	fa := startFullApp(t, slog.New(slog.DiscardHandler), func(c *config.Config) {
		c.HTTP.TLSCertFile, c.HTTP.TLSKeyFile = certFile, keyFile
		c.HTTP.MaxBodyBytes = 64 << 10
	})
	admin := fa.key(t, "connect-admin", httpapi.RoleAdmin)
	operator := fa.key(t, "connect-operator", httpapi.RoleOperator)
	viewer := fa.key(t, "connect-viewer", httpapi.RoleViewer)

	type auth struct{ basicUser, basicPass, bearer string }
	call := func(a auth, method, path, body string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, fa.connectBase+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if a.basicPass != "" {
			req.SetBasicAuth(a.basicUser, a.basicPass)
		}
		if a.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+a.bearer)
		}
		resp, err := fa.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	expectError := func(a auth, method, path, body string, want int) *http.Response {
		t.Helper()
		resp, b := call(a, method, path, body)
		var e connectError
		if resp.StatusCode != want || json.Unmarshal(b, &e) != nil || e.ErrorCode == nil || *e.ErrorCode != want || e.Message == "" {
			t.Errorf("%s %s: %d %s, want %d with {\"error_code\":%d,\"message\":...}", method, path, resp.StatusCode, b, want, want)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
		}
		return resp
	}

	// TLS: the port speaks HTTPS; a plain HTTP request is not served.
	if resp, err := http.Get("http://" + strings.TrimPrefix(fa.connectBase, "https://") + "/connectors"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP on the TLS-configured Connect port answered 200")
		}
	}

	// Basic credentials, the key as the password; the username is not checked.
	for _, user := range []string{"connect-admin", "anyone"} {
		if resp, b := call(auth{basicUser: user, basicPass: admin}, http.MethodGet, "/connectors", ""); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "[]" {
			t.Errorf("GET /connectors with Basic %s:<admin key>: %d %s, want 200 []", user, resp.StatusCode, b)
		}
	}
	if resp, b := call(auth{basicUser: "ops", basicPass: operator}, http.MethodGet, "/connectors?expand=status&expand=info", ""); resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "{}" {
		t.Errorf("GET /connectors?expand=status&expand=info as operator: %d %s, want 200 {}", resp.StatusCode, b)
	}
	if resp, _ := call(auth{bearer: admin}, http.MethodGet, "/connector-plugins", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /connector-plugins with Bearer: %d, want 200", resp.StatusCode)
	}

	// 401 without or with wrong credentials, with Basic among the challenges.
	resp := expectError(auth{}, http.MethodGet, "/connectors", "", http.StatusUnauthorized)
	if ch := strings.Join(resp.Header.Values("WWW-Authenticate"), " "); !strings.Contains(ch, "Basic") {
		t.Errorf("401 challenges %q do not offer Basic", ch)
	}
	expectError(auth{basicUser: "x", basicPass: "tok_not-a-key"}, http.MethodGet, "/connectors", "", http.StatusUnauthorized)
	expectError(auth{basicUser: "x", basicPass: admin + "x"}, http.MethodGet, "/connectors", "", http.StatusUnauthorized)
	// 403: a viewer reads nothing, an operator changes nothing.
	expectError(auth{basicUser: "v", basicPass: viewer}, http.MethodGet, "/connectors", "", http.StatusForbidden)
	expectError(auth{basicUser: "o", basicPass: operator}, http.MethodPost, "/connectors", `{"name":"x","config":{}}`, http.StatusForbidden)
	// 404, 405, bad JSON (400), too large (413), invalid config (400).
	expectError(auth{bearer: admin}, http.MethodGet, "/no/such/route", "", http.StatusNotFound)
	expectError(auth{bearer: admin}, http.MethodGet, "/connectors/none/status", "", http.StatusNotFound)
	expectError(auth{bearer: admin}, http.MethodPatch, "/connectors", "{}", http.StatusMethodNotAllowed)
	expectError(auth{bearer: admin}, http.MethodDelete, "/connectors", "", http.StatusMethodNotAllowed)
	expectError(auth{bearer: admin}, http.MethodPost, "/nowhere", "{}", http.StatusNotFound)
	expectError(auth{bearer: admin}, http.MethodPost, "/connectors", `{"name":`, http.StatusBadRequest)
	big := `{"name":"x","config":{"pad":"` + string(bytes.Repeat([]byte("x"), 100<<10)) + `"}}`
	expectError(auth{bearer: admin}, http.MethodPost, "/connectors", big, http.StatusRequestEntityTooLarge)
	expectError(auth{basicUser: "a", basicPass: admin}, http.MethodPost, "/connectors", `{"name":"x","config":{"connector.class":"io.debezium.connector.postgresql.PostgresConnector"}}`, http.StatusBadRequest)
}
