// Package httpapi is TrackOps' HTTP edge: the router with its middleware
// (request ids, logging, metrics, authentication, roles, rate limits, audit),
// RFC 9457 problem details, and strict JSON decoding. Domain packages declare
// their Routes; this package knows none of them.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/validation"
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string                  `json:"type"`
	Title    string                  `json:"title"`
	Status   int                     `json:"status"`
	Detail   string                  `json:"detail,omitempty"`
	Instance string                  `json:"instance,omitempty"`
	Errors   []validation.FieldError `json:"errors,omitempty"`
}

// WriteProblem writes a problem details response.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, detail string, fields ...validation.FieldError) {
	p := Problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: detail,
		Errors: fields,
	}
	if r != nil {
		p.Instance = r.URL.Path
	}
	if len(fields) > 0 {
		p.Type = "https://trackops.dev/problems/validation"
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteJSON writes v as a JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteJSONBody writes status and body, already encoded as JSON.
func WriteJSONBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// jsonContentType is shared by every JSON response, like securityHeaders.
var jsonContentType = []string{"application/json"}

// WriteValidation writes 422 with each field error listed.
func WriteValidation(w http.ResponseWriter, r *http.Request, errs validation.Errors) {
	WriteProblem(w, r, http.StatusUnprocessableEntity, "the request has invalid fields", errs...)
}

// RetryAfterUnavailable is the Retry-After, in seconds, of a 503 for an
// unavailable database.
const RetryAfterUnavailable = 2

// WriteError maps err to a response: validation errors and bad request bodies
// get 4xx with their message; a database that cannot be reached is 503 with
// Retry-After (postgres.IsUnavailable); a value the database refused (SQLSTATE
// class 22) is 422; anything else is a 500 whose detail does not leak
// internals.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var verrs validation.Errors
	var bad *BadRequestError
	switch {
	case errors.As(err, &verrs):
		WriteValidation(w, r, verrs)
	case errors.As(err, &bad):
		WriteProblem(w, r, bad.Status, bad.Message)
	case r.Context().Err() == nil && postgres.IsUnavailable(err):
		// The database is restarting or out of reach: the client should
		// come back, not report a bug.
		LoggerFrom(r.Context()).WarnContext(r.Context(), "database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterUnavailable))
		WriteProblem(w, r, http.StatusServiceUnavailable, "the database is unavailable; retry in a few seconds")
	case postgres.IsDataException(err):
		// A validator should have named the field; this is the safety net.
		LoggerFrom(r.Context()).WarnContext(r.Context(), "database refused a value that passed validation",
			"method", r.Method, "path", r.URL.Path, "sqlstate", postgres.SQLState(err), "err", err)
		WriteProblem(w, r, http.StatusUnprocessableEntity,
			fmt.Sprintf("the request holds a value that cannot be stored (SQLSTATE %s)", postgres.SQLState(err)))
	default:
		LoggerFrom(r.Context()).ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		WriteProblem(w, r, http.StatusInternalServerError, "internal error; the request id in X-Request-Id identifies it in the logs")
	}
}

// BadRequestError is a request the server cannot parse.
type BadRequestError struct {
	Status  int
	Message string
}

func (e *BadRequestError) Error() string { return e.Message }

// DecodeJSON reads the body into v strictly: one JSON object, no unknown
// fields, no trailing data, at most the router's body limit, valid UTF-8.
// The error it returns is a *BadRequestError (400, or 413 when too large, or
// 415 for a non-JSON content type) whose message says what is wrong, or
// validation.Errors (422) naming each string that cannot be stored (a NUL
// character, a lone surrogate, a number out of range in raw JSON).
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") &&
		!strings.Contains(strings.ToLower(ct), "+json") {
		return &BadRequestError{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not supported; send application/json", ct)}
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &BadRequestError{statusFor(err), describeJSONError(err)}
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return &BadRequestError{http.StatusBadRequest, "request body must hold a single JSON object"}
	}
	// Every string must be storable text (see text.go): a 422 naming the
	// field, not a database error.
	if errs := checkDecoded(v); len(errs) > 0 {
		return errs
	}
	return nil
}

// DecodeOptionalJSON is DecodeJSON for endpoints whose body may be left out
// (POST .../cancel): no body at all leaves v as it is.
func DecodeOptionalJSON(r *http.Request, v any) error {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	return DecodeJSON(r, v)
}

func statusFor(err error) int {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

func describeJSONError(err error) string {
	var (
		syntax   *json.SyntaxError
		typeErr  *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit)
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends early"
	case errors.Is(err, io.EOF):
		return "request body is empty; send a JSON object"
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return fmt.Sprintf("the body must be a JSON object, not %s", typeErr.Value)
		}
		return fmt.Sprintf("field %q must be %s, not %s", field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON: " + err.Error()
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return kind
}
