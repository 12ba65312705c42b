package logging

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Mask wraps h so that no record it handles carries a secret or personal
// data: attributes whose names say they hold a password, token, key,
// Authorization header, cookie, e-mail or address are masked, and e-mail
// addresses, bearer tokens and API keys found inside any string value or
// message are masked too. Use it around the handler New builds:
// slog.New(logging.Mask(h)). MaskAttr is the same rule for
// slog.HandlerOptions.ReplaceAttr.
func Mask(h slog.Handler) slog.Handler {
	if _, ok := h.(maskHandler); ok {
		return h
	}
	return maskHandler{h}
}

type maskHandler struct{ next slog.Handler }

func (h maskHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h maskHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, MaskText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h maskHandler) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return maskHandler{h.next.WithAttrs(masked)}
}

func (h maskHandler) WithGroup(name string) slog.Handler { return maskHandler{h.next.WithGroup(name)} }

// MaskAttr masks one attribute; it has the signature of
// slog.HandlerOptions.ReplaceAttr.
func MaskAttr(_ []string, a slog.Attr) slog.Attr { return maskAttr(a) }

// Redacted replaces a secret value entirely.
const Redacted = "[REDACTED]"

func maskAttr(a slog.Attr) slog.Attr {
	a.Value = a.Value.Resolve()
	switch kind := sensitiveKey(a.Key); {
	case kind == keyEmail && a.Value.Kind() == slog.KindString:
		return slog.String(a.Key, MaskEmail(a.Value.String()))
	case kind != keyPlain:
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); needsScrub(s) {
			return slog.String(a.Key, MaskText(s))
		}
	case slog.KindGroup:
		group := a.Value.Group()
		masked := make([]slog.Attr, len(group))
		for i, g := range group {
			masked[i] = maskAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(masked...)}
	case slog.KindAny:
		// Errors often quote what failed, e-mail addresses included.
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); needsScrub(s) {
				return slog.String(a.Key, MaskText(s))
			}
		}
	}
	return a
}

type keyKind int

const (
	keyPlain keyKind = iota
	keySecret
	keyEmail
)

// secretKeyParts: any attribute name containing one of these is a secret.
var secretKeyParts = []string{"password", "passwd", "secret", "token", "authorization", "api_key", "apikey",
	"cookie", "credential", "private_key", "session_id"}

// addressKeys: personal postal data, masked whole.
var addressKeys = map[string]bool{"address": true, "shipping_address": true, "billing_address": true,
	"street": true, "phone": true, "phone_number": true}

func sensitiveKey(key string) keyKind {
	k := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	for _, p := range secretKeyParts {
		if strings.Contains(k, p) {
			return keySecret
		}
	}
	if strings.Contains(k, "email") || strings.Contains(k, "e_mail") {
		return keyEmail
	}
	if addressKeys[k] || strings.HasSuffix(k, "shipping_address") || strings.HasSuffix(k, "billing_address") {
		return keySecret
	}
	return keyPlain
}

var (
	emailPattern  = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@[\p{L}\p{N}.\-]+\.\p{L}{2,}`)
	bearerPattern = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+`)
	apiKeyPattern = regexp.MustCompile(`tok_[A-Za-z0-9_\-]{8,}`)
)

// needsScrub is a cheap pre-check so ordinary strings skip the regexps.
func needsScrub(s string) bool {
	return strings.Contains(s, "@") || strings.Contains(s, "tok_") || strings.Contains(strings.ToLower(s), "bearer ") ||
		strings.Contains(strings.ToLower(s), "basic ")
}

// MaskText masks e-mail addresses, bearer/basic credentials and API keys
// inside free text.
func MaskText(s string) string {
	if !needsScrub(s) {
		return s
	}
	s = apiKeyPattern.ReplaceAllString(s, "tok_"+Redacted)
	s = bearerPattern.ReplaceAllString(s, "$1 "+Redacted)
	return emailPattern.ReplaceAllStringFunc(s, MaskEmail)
}

// MaskEmail keeps an address recognisable to its owner but not to a reader
// of logs: "jane.doe@example.com" becomes "j***@example.com".
func MaskEmail(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || local == "" {
		return Redacted
	}
	first, _ := utf8.DecodeRuneInString(local)
	return string(first) + "***@" + domain
}
