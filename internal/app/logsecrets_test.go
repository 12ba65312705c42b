package app

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/trackops/trackops/internal/logging"
)

// TestLogsCarryNoSecretsOrCustomerEmail runs the full app with every log
// line (debug level included, and slog's default logger, for any component
// that falls back to it) captured, exercises user creation, login, failed
// login, session and API key use, API key creation, an order whose customer
// id and shipping address hold an e-mail address, a rejected order quoting
// it, and the events the order sets off, then searches the logs for each
// password, token, key, the e-mail and the street address.
//
// Not parallel: it points the process-wide slog default (and the standard
// log package) at its buffer, which every other test's libraries log to.
func TestLogsCarryNoSecretsOrCustomerEmail(t *testing.T) {
	buf := &syncBuffer{}
	logger := logging.New(buf, "json", "debug")
	oldDefault, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(logger)
	t.Cleanup(func() { slog.SetDefault(oldDefault); log.SetOutput(oldOut); log.SetFlags(oldFlags) })

	fa := startFullApp(t, logger)
	adminKey := fa.key(t, "log-admin", admin)

	const (
		username   = "log.test.user"
		password   = "Corr3ct-Horse-Battery-Staple"
		wrongGuess = "Wr0ng-Guess-Tr0ub4dor"
		email      = "jane.doe+vip@example.com"
		street     = "42 Hidden Orchard Lane"
	)
	fa.mustDo(t, http.StatusCreated, adminKey, http.MethodPost, "/api/v1/users",
		fmt.Sprintf(`{"username":%q,"password":%q,"role":"operator"}`, username, password), nil)
	if code, b := fa.do(t, "", http.MethodPost, "/api/v1/auth/login",
		fmt.Sprintf(`{"username":%q,"password":%q}`, username, wrongGuess)); code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: %d %s", code, b)
	}
	var login struct{ Token string }
	fa.mustDo(t, http.StatusOK, "", http.MethodPost, "/api/v1/auth/login",
		fmt.Sprintf(`{"username":%q,"password":%q}`, username, password), &login)
	session := login.Token
	fa.mustDo(t, http.StatusOK, session, http.MethodGet, "/api/v1/auth/me", "", nil)

	var newKey struct{ Key string }
	fa.mustDo(t, http.StatusCreated, adminKey, http.MethodPost, "/api/v1/auth/apikeys", `{"name":"log-viewer","role":"viewer"}`, &newKey)
	viewerKey := newKey.Key

	fa.mustDo(t, http.StatusCreated, session, http.MethodPut, "/api/v1/inventory/SKU-LOG-1", `{"name":"logged widget","on_hand":5}`, nil)
	address := fmt.Sprintf(`{"name":"Jane Doe","email":%q,"street":%q,"city":"Springfield"}`, email, street)
	var order struct{ ID string }
	fa.mustDo(t, http.StatusCreated, session, http.MethodPost, "/api/v1/orders",
		fmt.Sprintf(`{"customer_id":%q,"items":[{"sku":"SKU-LOG-1","quantity":1,"unit_price":"3.50"}],"shipping_address":%s}`, email, address),
		&order)
	// Rejected input that quotes the e-mail back.
	if code, b := fa.do(t, session, http.MethodPost, "/api/v1/orders",
		fmt.Sprintf(`{"customer_id":%q,"items":[{"sku":"SKU-LOG-1","quantity":-1,"unit_price":"x"}],"shipping_address":%s,"password":%q}`,
			email, address, password)); code < 400 || code >= 500 {
		t.Fatalf("bad order: %d %s", code, b)
	}
	fa.mustDo(t, http.StatusOK, viewerKey, http.MethodGet, "/api/v1/orders/"+order.ID, "", nil)
	fa.mustDo(t, http.StatusOK, viewerKey, http.MethodGet, "/api/v1/orders?customer_id="+url.QueryEscape(email), "", nil)
	// A well-formed key that does not exist.
	unknownKey := "tok_" + strings.Repeat("Zm9v", 10) + "YmE"
	if code, _ := fa.do(t, unknownKey, http.MethodGet, "/api/v1/orders/"+order.ID, ""); code != http.StatusUnauthorized {
		t.Fatalf("unknown key: %d, want 401", code)
	}
	// The order's events travel relay → inventory → saga, each logging.
	waitFor(t, "order confirmed", func() bool {
		var o struct{ Status string }
		code, b := fa.do(t, viewerKey, http.MethodGet, "/api/v1/orders/"+order.ID, "")
		return code == http.StatusOK && json.Unmarshal(b, &o) == nil && o.Status == "CONFIRMED"
	})
	fa.mustDo(t, http.StatusNoContent, session, http.MethodPost, "/api/v1/auth/logout", "", nil)
	fa.stop() // shutdown logs too

	logs := buf.String()
	if n := len(buf.lines(t, "http request")); n < 12 {
		t.Fatalf("only %d request log lines captured; the test would prove nothing", n)
	}
	if !strings.Contains(logs, "/api/v1/auth/login") || !strings.Contains(logs, `"principal":"user:`+username+`"`) {
		t.Fatalf("the login and the session's requests are not in the logs:\n%s", logs)
	}
	secrets := map[string]string{
		"password":                  password,
		"wrong password guess":      wrongGuess,
		"session token":             session,
		"admin API key":             adminKey,
		"admin API key secret":      strings.TrimPrefix(adminKey, "tok_"),
		"created API key":           viewerKey,
		"unknown API key":           unknownKey,
		"customer e-mail":           email,
		"customer e-mail, escaped":  url.QueryEscape(email),
		"e-mail's local part":       "jane.doe",
		"shipping street":           street,
		"shipping street, fragment": "Hidden Orchard",
	}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("%s is empty", what)
		}
		if i := strings.Index(logs, s); i >= 0 {
			t.Errorf("the logs contain the %s: …%s…", what, logs[max(0, i-200):min(len(logs), i+len(s)+100)])
		}
	}
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
