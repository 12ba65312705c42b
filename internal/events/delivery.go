package events

import (
	"context"
	"time"
)

// Delivery is where and how often the event a handler is working on was
// delivered: its consumer group, topic, partition, offset and timestamp, and
// which attempt this is. The Kafka consumer runner puts it in the context of
// every handler call, so what a handler writes in its own transaction (the
// inbox row) can say where the event was handled without another round trip
// or a change to the handler's signature. It describes the delivery in
// plain values, so handlers read it without knowing the transport.
type Delivery struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	// Attempt is 1 on the first try and grows with each retry.
	Attempt int
}

type deliveryKey struct{}

// WithDelivery returns ctx carrying d.
func WithDelivery(ctx context.Context, d Delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

// DeliveryFrom returns the Delivery in ctx; ok is false outside a
// consumer's handler call (a direct call, such as the sweeper's).
func DeliveryFrom(ctx context.Context) (d Delivery, ok bool) {
	d, ok = ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}
