package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestMaskKeepsSecretsAndPIIOutOfLogs(t *testing.T) {
	secrets := []string{"jane.doe@example.com", "s3cr3t-passw0rd", "tok_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg",
		"eyJhbGciOiJIUzI1NiJ9.payload.sig", "1 Main Street", "sessiontokenvalue123", "other@example.org"}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		var h slog.Handler = slog.NewJSONHandler(&buf, nil)
		if format == "text" {
			h = slog.NewTextHandler(&buf, nil)
		}
		log := slog.New(Mask(contextHandler{h})).With("api_key", secrets[2])
		log.Info("login attempt by jane.doe@example.com",
			"email", secrets[0], "password", secrets[1], "Authorization", "Bearer "+secrets[3],
			slog.Group("order", "shipping_address", map[string]string{"street": secrets[4]}, "customer_email", secrets[6]),
			"token", secrets[5], "err", errors.New("user other@example.org not found"),
			"detail", "called with Bearer "+secrets[3], "status", 200)
		log.WithGroup("req").Warn("header", "X-Api-Key", secrets[2], "note", "key "+secrets[2]+" rejected")
		out := buf.String()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s log contains %q:\n%s", format, s, out)
			}
		}
		for _, keep := range []string{"j***@example.com", "o***@example.org", "200", Redacted, "login attempt by"} {
			if !strings.Contains(out, keep) {
				t.Errorf("%s log lacks %q (masking should keep the rest readable):\n%s", format, keep, out)
			}
		}
	}
}

func TestMaskAttrAsReplaceAttr(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: MaskAttr}))
	log.InfoContext(context.Background(), "x", "db_password", "pw123456", "user_email", "a@b.co", "client_ip", "192.0.2.1")
	out := buf.String()
	if strings.Contains(out, "pw123456") || strings.Contains(out, "a@b.co") || !strings.Contains(out, "192.0.2.1") {
		t.Errorf("ReplaceAttr output: %s", out)
	}
}

func TestMaskText(t *testing.T) {
	cases := map[string]string{
		"plain text":                "plain text",
		"mail bob@example.com now":  "mail b***@example.com now",
		"Authorization: Bearer abc": "Authorization: Bearer " + Redacted,
		"basic dXNlcjpwYXNz":        "basic " + Redacted,
		"key tok_0123456789abcdef!": "key tok_" + Redacted + "!",
		"not an email: user@":       "not an email: user@",
		"ümlaut@exämple.com":        "ü***@exämple.com",
	}
	for in, want := range cases {
		if got := MaskText(in); got != want {
			t.Errorf("MaskText(%q) = %q, want %q", in, got, want)
		}
	}
	if got := MaskEmail("élan@example.com"); got != "é***@example.com" {
		t.Errorf("MaskEmail keeps a whole first rune: %q", got)
	}
}
