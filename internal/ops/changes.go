package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/trackops/trackops/internal/journey"
)

// ChangeFinder finds the CDC change records of one order in a change topic
// for the order journey: the connector records no per-order position, so it
// scans the topic briefly from just before each change's commit time, keyed
// on the order id. Each scan is bounded; under heavy load a change may be
// further away than the budget reaches, and the journey says so.
type ChangeFinder struct {
	k     *Kafka
	topic string
	// Budget is how many records each scan examines at most.
	Budget int
}

// NewChangeFinder returns a finder over topic (orders.orders).
func (k *Kafka) NewChangeFinder(topic string) *ChangeFinder {
	return &ChangeFinder{k: k, topic: topic, Budget: 3000}
}

var _ journey.ChangeFinder = (*ChangeFinder)(nil)

// FindChanges implements journey.ChangeFinder.
func (f *ChangeFinder) FindChanges(ctx context.Context, orderID string, near []time.Time) ([]journey.Change, error) {
	seen := map[[2]int64]bool{}
	var out []journey.Change
	var covered time.Time
	for _, t := range near {
		// One scan from a time also covers changes shortly after it.
		if !covered.IsZero() && t.Before(covered) {
			continue
		}
		res, err := f.k.Browse(ctx, BrowseRequest{Topic: f.topic, From: FromTimestamp, Timestamp: t.Add(-2 * time.Second),
			Filter: Filter{Key: orderID}, Limit: 20, Budget: f.Budget})
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", f.topic, err)
		}
		for _, m := range res.Messages {
			k := [2]int64{int64(m.Partition), m.Offset}
			if seen[k] || m.Value == nil {
				continue
			}
			seen[k] = true
			out = append(out, changeOf(f.topic, m))
		}
		if len(res.Messages) > 0 {
			last, _ := time.Parse(time.RFC3339Nano, res.Messages[len(res.Messages)-1].Timestamp)
			covered = last
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

// changeOf reads op, source.lsn and the row's version out of a Debezium
// change event (with or without the schema envelope).
func changeOf(topic string, m Message) journey.Change {
	c := journey.Change{Topic: topic, Partition: m.Partition, Offset: m.Offset}
	c.Timestamp, _ = time.Parse(time.RFC3339Nano, m.Timestamp)
	var env struct {
		Payload json.RawMessage `json:"payload"`
		Op      string          `json:"op"`
	}
	body := []byte(*m.Value)
	if json.Unmarshal(body, &env) == nil && env.Op == "" && len(env.Payload) > 0 {
		body = env.Payload
	}
	var ev struct {
		Op     string `json:"op"`
		Source struct {
			LSN json.Number `json:"lsn"`
		} `json:"source"`
		After, Before map[string]json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&ev) != nil {
		return c
	}
	c.Op = ev.Op
	if ev.Source.LSN != "" {
		if n, err := ev.Source.LSN.Int64(); err == nil {
			c.LSN = fmt.Sprintf("%X/%X", uint32(uint64(n)>>32), uint32(n))
		}
	}
	row := ev.After
	if row == nil {
		row = ev.Before
	}
	if v, ok := row["version"]; ok {
		_ = json.Unmarshal(v, &c.Version)
	}
	return c
}
