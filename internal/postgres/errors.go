package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrUnavailable means PostgreSQL could not be reached or is going away:
// connection refused or reset, the server shutting down or starting up
// (SQLSTATE 57P01, 57P02, 57P03), a connection exception (class 08), or no
// connection to be had. The request may succeed later: the HTTP edge answers
// 503 with Retry-After. Use IsUnavailable to test an error, which also
// recognises driver errors not wrapped with it.
var ErrUnavailable = errors.New("database unavailable")

// ErrDataException means PostgreSQL refused a value (SQLSTATE class 22: out
// of range, bad encoding, NUL in text, ...). Validators are meant to refuse
// such input first; this is the safety net, a 4xx at the edge.
var ErrDataException = errors.New("database refused a value")

// IsUnavailable reports whether err says the database is unreachable or
// going away (see ErrUnavailable), as opposed to refusing the request.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up, recovering)
			pgErr.Code == "53300": // too_many_connections
			return true
		}
		return false // the server answered: whatever it said is not unavailability
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	// pgx reports a connection that died under a query as "conn closed" or
	// "unexpected EOF" without a typed error it exports.
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool") || strings.Contains(msg, "failed to connect") ||
		strings.Contains(msg, "unexpected EOF")
}

// IsDataException reports whether PostgreSQL refused a value of the
// request (SQLSTATE class 22).
func IsDataException(err error) bool {
	if errors.Is(err, ErrDataException) {
		return true
	}
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "22")
}

// SQLState returns err's SQLSTATE, or "" when PostgreSQL did not answer it.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// Classify wraps err with ErrUnavailable or ErrDataException when it is
// one, so callers further up can test it with errors.Is; other errors (and
// nil) come back unchanged.
func Classify(err error) error {
	switch {
	case err == nil, errors.Is(err, ErrUnavailable), errors.Is(err, ErrDataException):
		return err
	case errors.Is(err, context.Canceled):
		return err // the caller gave up; nothing to say about the database
	case IsUnavailable(err):
		return &classified{kind: ErrUnavailable, err: err}
	case IsDataException(err):
		return &classified{kind: ErrDataException, err: err}
	}
	return err
}

type classified struct {
	kind error
	err  error
}

func (e *classified) Error() string   { return e.err.Error() }
func (e *classified) Unwrap() []error { return []error{e.kind, e.err} }
