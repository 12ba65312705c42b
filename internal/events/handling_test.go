package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestPermanentKeepsTheMessageAndTheChain(t *testing.T) {
	cause := fmt.Errorf("order saga: %w", io.ErrUnexpectedEOF)
	err := Permanent(cause)
	if err.Error() != cause.Error() {
		t.Errorf("message %q, want the cause's %q", err, cause)
	}
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, io.ErrUnexpectedEOF) || !IsPermanent(err) {
		t.Errorf("chain of %v lost: ErrPermanent %v, cause %v", err, errors.Is(err, ErrPermanent), errors.Is(err, io.ErrUnexpectedEOF))
	}
	if !IsPermanent(fmt.Errorf("reserve: %w", err)) {
		t.Error("wrapping a permanent error made it transient")
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	_, malformed := Decode([]byte(`{}`))
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{malformed, true},
		{errors.New("connection refused"), false},
		{context.DeadlineExceeded, false},
	} {
		if got := IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDeliveryTravelsInTheContext(t *testing.T) {
	if _, ok := DeliveryFrom(context.Background()); ok {
		t.Error("a bare context carries a delivery")
	}
	d := Delivery{Group: "g", Topic: OrderCreated, Partition: 2, Offset: 7, Attempt: 3}
	got, ok := DeliveryFrom(WithDelivery(context.Background(), d))
	if !ok || got != d {
		t.Errorf("DeliveryFrom = %+v, %v; want %+v", got, ok, d)
	}
}
