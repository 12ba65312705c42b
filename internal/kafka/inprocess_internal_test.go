package kafka

import (
	"context"
	"testing"
	"time"
)

// TestInProcessDialFailsOnceTheBrokerClosed: after the broker stopped, an
// in-memory dial fails at once instead of waiting for an Accept that never
// comes.
func TestInProcessDialFailsOnceTheBrokerClosed(t *testing.T) {
	t.Parallel()
	b, err := StartEmbedded("127.0.0.1:0", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := b.listener.dial(ctx)
	if err != nil {
		t.Fatalf("dial while running: %v", err)
	}
	_ = conn.Close()
	b.Close()
	if _, err := b.listener.dial(ctx); err == nil {
		t.Fatal("dial after the broker closed succeeded")
	} else if ctx.Err() != nil {
		t.Fatalf("dial after the broker closed waited for the deadline: %v", err)
	}
}
