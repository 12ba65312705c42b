package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/kafka/kafkatest"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// kafkaJSRecord is one line of testdata/kafkajs/consume.js's output.
type kafkaJSRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers"`
}

// TestKafkaJSReadsEveryTopic runs the platform under the cdc strategy (so
// the connector with its order change stream, the relay and the consumers' dead-letter
// path all produce), drives every kind of event, and reads every topic
// TrackOps wrote with KafkaJS — an independent client library, at its
// defaults. KafkaJS implements no Snappy, LZ4 or ZSTD codec of its own, so
// this is what catches a producer compressing by default.
func TestKafkaJSReadsEveryTopic(t *testing.T) {
	endToEnd(t)
	node := kafkaJSHarness(t)
	db := postgrestest.New(t)
	cfg, _ := strategyConfig(t, db, "cdc")
	p := Start(t, cfg)

	// Stock for one order, then: one confirmed and cancelled (created,
	// reserved, status updated, cancelled, released), one out of stock
	// (reservation failed), and one poison record on ORDER_CREATED that the
	// inventory consumer dead-letters.
	mustCall(t, p, http.MethodPut, "/api/v1/inventory/SKU-JS", `{"name":"interop widget","on_hand":1}`, http.StatusCreated, nil)
	var confirmed, failed apiOrder
	mustCall(t, p, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"js","items":[{"sku":"SKU-JS","quantity":1,"unit_price":"2.50"}]}`, http.StatusCreated, &confirmed)
	waitStatus(t, p, confirmed.ID, "CONFIRMED")
	mustCall(t, p, http.MethodPost, "/api/v1/orders/"+confirmed.ID+"/cancel", `{"reason":"interop"}`, http.StatusOK, nil)
	mustCall(t, p, http.MethodPost, "/api/v1/orders",
		`{"customer_id":"js","items":[{"sku":"SKU-JS","quantity":5,"unit_price":"2.50"}]}`, http.StatusCreated, &failed)
	waitStatus(t, p, failed.ID, "CANCELLED")

	client, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaAddr), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	if err := client.ProduceSync(ctx, &kgo.Record{Topic: events.OrderCreated, Key: []byte("poison"), Value: []byte("not a cloud event")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	topics := append([]string{}, events.AllTypes...)
	topics = append(topics, events.OrderCreated+events.DLQSuffix, "orders.orders", "orders.order_items")
	adm := kadm.NewClient(client)
	waitUntil(t, "a record on every topic", hangGuard, func(ctx context.Context) (bool, error) {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return false, err
		}
		for _, topic := range topics {
			n := int64(0)
			ends.Each(func(o kadm.ListedOffset) {
				if o.Topic == topic {
					n += o.Offset
				}
			})
			if n == 0 {
				return false, fmt.Errorf("%s is still empty", topic)
			}
		}
		return true, nil
	})

	recs := node(t, cfg.KafkaAddr, topics...)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.Topic]++
		switch {
		case r.Topic == events.OrderCreated && r.Key != nil && *r.Key == "poison":
		case r.Topic == events.OrderCreated+events.DLQSuffix:
			if r.Headers["kafka_dlt-original-topic"] != events.OrderCreated || r.Value == nil || *r.Value != "not a cloud event" {
				t.Errorf("dead letter read by KafkaJS: %+v", r)
			}
		case strings.HasPrefix(r.Topic, "orders."):
			var change struct {
				Op     string `json:"op"`
				Source struct {
					Connector string `json:"connector"`
				} `json:"source"`
			}
			if r.Value != nil {
				if err := json.Unmarshal([]byte(*r.Value), &change); err != nil || change.Source.Connector != "postgresql" {
					t.Errorf("change event read by KafkaJS on %s: %v %s", r.Topic, err, *r.Value)
				}
			}
		default:
			var ce struct {
				SpecVersion string `json:"specversion"`
				Type        string `json:"type"`
			}
			if r.Value == nil || json.Unmarshal([]byte(*r.Value), &ce) != nil || ce.SpecVersion != "1.0" || ce.Type == "" || r.Headers["event_type"] == "" {
				t.Errorf("event read by KafkaJS on %s is not a CloudEvent with an event_type header: %+v", r.Topic, r)
			}
		}
	}
	for _, topic := range topics {
		if seen[topic] == 0 {
			t.Errorf("KafkaJS read nothing from %s", topic)
		}
	}
}

// TestKafkaJSHarnessCatchesSnappy shows the harness above can fail: a
// Snappy-compressed batch, franz-go's own default, makes KafkaJS give up.
func TestKafkaJSHarnessCatchesSnappy(t *testing.T) {
	endToEnd(t)
	kafkaJSHarness(t)
	broker := kafkatest.New(t).Addr()
	client, err := kgo.NewClient(kgo.SeedBrokers(broker), kgo.AllowAutoTopicCreation(),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.ProduceSync(context.Background(), &kgo.Record{Topic: "snappy", Value: []byte(strings.Repeat("compress me ", 50))}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out, err := runKafkaJS(t, broker, "snappy")
	if err == nil || !strings.Contains(out, "Snappy compression not implemented") {
		t.Fatalf("KafkaJS read a Snappy batch without complaint (err %v):\n%s", err, out)
	}
}

// kafkaJS runs testdata/kafkajs/consume.js.
type kafkaJS func(t *testing.T, broker string, topics ...string) []kafkaJSRecord

// kafkaJSHarness finds node and the KafkaJS install; a missing one fails
// the test (`make test-tools` installs both).
func kafkaJSHarness(t *testing.T) kafkaJS {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed; run `make test-tools` (scripts/ensure-test-tools.sh)")
	}
	if _, err := os.Stat(filepath.Join(kafkaJSDir(), "node_modules", "kafkajs", "package.json")); err != nil {
		t.Fatalf("KafkaJS is not installed in %s; run `make test-tools` (scripts/ensure-test-tools.sh): %v", kafkaJSDir(), err)
	}
	return func(t *testing.T, broker string, topics ...string) []kafkaJSRecord {
		t.Helper()
		out, err := runKafkaJS(t, broker, topics...)
		if err != nil {
			t.Fatalf("KafkaJS could not read TrackOps' topics: %v\n%s", err, out)
		}
		var recs []kafkaJSRecord
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var r kafkaJSRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("KafkaJS output line %q: %v", line, err)
			}
			recs = append(recs, r)
		}
		return recs
	}
}

// runKafkaJS starts consume.js in a group of its own and returns its
// combined output; the timeout is a hang guard.
func runKafkaJS(t *testing.T, broker string, topics ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"consume.js", broker, "trackops-interop-" + uniqueSuffix()}, topics...)
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = kafkaJSDir()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("KafkaJS did not finish within 2 minutes: %w", ctx.Err())
	}
	return string(out), err
}

func kafkaJSDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "kafkajs")
}

func waitStatus(t *testing.T, p *Process, id, status string) {
	t.Helper()
	defer func() {
		if t.Failed() {
			var o, cdc, groups any
			_, _ = call(p, http.MethodGet, "/api/v1/orders/"+id, "", &o)
			_, _ = call(p, http.MethodGet, "/api/v1/ops/cdc", "", &cdc)
			_, _ = call(p, http.MethodGet, "/api/v1/ops/consumer-groups", "", &groups)
			t.Logf("order: %v\ncdc: %v\nconsumer groups: %v\ntrackops log:\n%s", o, cdc, groups, p.Log.String())
		}
	}()
	waitUntil(t, "order "+id+" "+status, hangGuard, func(context.Context) (bool, error) {
		var o apiOrder
		_, err := call(p, http.MethodGet, "/api/v1/orders/"+id, "", &o)
		return o.Status == status, err
	})
}
