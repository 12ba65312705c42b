package kafka_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka/kafkatest"
)

// connNetworks records the network of every connection a client opens.
type connNetworks struct {
	mu   sync.Mutex
	seen map[string]int
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (c *connNetworks) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, conn net.Conn, err error) {
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	c.seen[conn.LocalAddr().Network()]++
}

func (c *connNetworks) counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.seen {
		out[k] = v
	}
	return out
}

// TestInProcessClientsSkipTCP: a client with the embedded broker's
// in-process dialer reaches it in memory for every connection (bootstrap
// and the advertised address alike), and its records are the same log that
// clients of other processes read over TCP.
func TestInProcessClientsSkipTCP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := kafkatest.New(t)
	nets := &connNetworks{}
	p := kafkatest.NewProducer(t, b, b.InProcessDialer(), kgo.WithHooks(nets))
	kafkatest.CreateTopics(t, p, 1, "in-process")
	for i := range 50 {
		rec := &kgo.Record{Topic: "in-process", Value: []byte{byte(i)}}
		if err := p.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	got := nets.counts()
	if got["pipe"] == 0 || len(got) != 1 {
		t.Fatalf("connections by network %v, want pipe only", got)
	}
	// Read over TCP, as another process would.
	recs := kafkatest.Read(t, b, "in-process", 50, 20*time.Second)
	if len(recs) != 50 {
		t.Fatalf("read %d records over TCP, want 50", len(recs))
	}
	for i, r := range recs {
		if len(r.Value) != 1 || r.Value[0] != byte(i) {
			t.Fatalf("record %d: value %v", i, r.Value)
		}
	}
}
