package events

import (
	"context"
	"errors"
)

// Handler reacts to one application event, decoded from its CloudEvents
// envelope: the order saga, the inventory reactions and the order cache
// refresh are Handlers. They never see the transport; the Kafka consumer
// runner (internal/kafka) decodes each record and calls them. A nil error
// marks the event done. Any other error is retried with back-off, unless it
// is permanent (IsPermanent): then no retry can help, and the event goes to
// its dead-letter topic at once.
type Handler func(ctx context.Context, ev Envelope) error

// ErrPermanent is the kind of a failure no retry can fix: an event that
// names an order that does not exist, an event type its handler does not
// take. Mark such an error with Permanent; test for it with IsPermanent.
// ErrMalformed is permanent too.
var ErrPermanent = errors.New("permanent failure")

// permanentError marks err as permanent without changing its text or its
// chain, so the dead letter's exception message and class are err's own.
type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() error        { return e.err }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as a failure no retry can fix (see ErrPermanent); its
// message stays err's. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent or is a malformed
// event (ErrMalformed): an event that fails this way today fails the same
// way tomorrow.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, ErrMalformed)
}
