// Package validation collects field-level errors of a request so they can be
// reported together, as RFC 9457 problem details list them.
package validation

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// FieldError is one invalid field and what is wrong with it.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Errors is a list of field errors; it is an error when not empty.
type Errors []FieldError

// Add records that field is invalid.
func (e *Errors) Add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns e as an error, or nil when nothing was added.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// Error lists every field error.
func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// TextProblem says what makes s unfit to be stored as text, or "" when it
// is fit: PostgreSQL refuses a NUL character in text (SQLSTATE 22P05 or
// 22021) and any byte sequence that is not UTF-8 (22021), so both are bad
// input to be named at the edge rather than a failed write.
func TextProblem(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return `must not contain the NUL character (\u0000)`
	}
	return ""
}

// Text records field as invalid when TextProblem finds s unfit; it reports
// whether s was fit.
func (e *Errors) Text(field, s string) bool {
	if p := TextProblem(s); p != "" {
		e.Add(field, "%s", p)
		return false
	}
	return true
}

// RawJSONProblem says why a JSON document cannot be stored as jsonb, or ""
// when it can: jsonb refuses the escape \u0000 (SQLSTATE 22P05) and bytes
// that are not UTF-8 (22021), in keys and values alike.
func RawJSONProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "must be valid UTF-8"
	}
	if HasNULEscape(raw) {
		return `must not contain the NUL character (\u0000)`
	}
	return ""
}

// HasNULEscape reports whether a JSON text holds the escape \u0000 in any
// string (key or value); an escaped backslash before "u0000" does not count.
func HasNULEscape(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		if raw[i+1] == 'u' && i+5 < len(raw) && string(raw[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character, so "\\u0000" is not read as an escape
	}
	return false
}
