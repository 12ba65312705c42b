// Package validation collects field-level errors of a request so they can be
// reported together, as RFC 9457 problem details list them.
package validation

import (
	"errors"
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

// Describe returns err as one plain line when it holds field errors — each
// field followed by what is wrong with it, "; " between them — for a
// command line, which has no problem details to list them in. Any other
// error is returned as it is.
func Describe(err error) error {
	var verrs Errors
	if !errors.As(err, &verrs) {
		return err
	}
	parts := make([]string, len(verrs))
	for i, f := range verrs {
		parts[i] = f.Field + " " + f.Message
	}
	return errors.New(strings.Join(parts, "; "))
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
// when it can (as far as its text shows): jsonb refuses the escape \u0000
// (SQLSTATE 22P05), bytes that are not UTF-8 (22021) and a UTF-16
// surrogate escape that is not part of a pair (22P02), in keys and values
// alike.
func RawJSONProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "must be valid UTF-8"
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // skip the escaped character, so "\\u0000" is not read as an escape
			continue
		}
		c, ok := hex4(raw, i+2)
		if !ok {
			return "must be valid JSON"
		}
		switch {
		case c == 0:
			return `must not contain the NUL character (\u0000)`
		case c >= 0xD800 && c < 0xDC00: // high surrogate: a low one must follow
			if lo, ok := hex4(raw, i+8); !ok || raw[i+6] != '\\' || raw[i+7] != 'u' || lo < 0xDC00 || lo > 0xDFFF {
				return "must not contain an unpaired UTF-16 surrogate escape"
			}
			i += 11
			continue
		case c >= 0xDC00 && c <= 0xDFFF:
			return "must not contain an unpaired UTF-16 surrogate escape"
		}
		i += 5
	}
	return ""
}

// hex4 reads four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
