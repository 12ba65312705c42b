package health

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
)

// DLQCounter counts dead letters per dead-letter topic; the DLQ monitor
// plugs in through DLQCounterFunc.
type DLQCounter interface {
	DLQCounts(ctx context.Context) (map[string]int64, error)
}

// DLQCounterFunc adapts a function to DLQCounter.
type DLQCounterFunc func(ctx context.Context) (map[string]int64, error)

// DLQCounts implements DLQCounter.
func (f DLQCounterFunc) DLQCounts(ctx context.Context) (map[string]int64, error) { return f(ctx) }

// KafkaDLQCounter counts the records retained in each application topic's
// dead-letter topic (end offset minus start offset over its partitions):
// what the DLQ holds, before any monitor's bookkeeping of replays.
func KafkaDLQCounter(client *kgo.Client) DLQCounter {
	adm := kadm.NewClient(client)
	topics := make([]string, len(events.AllTypes))
	for i, t := range events.AllTypes {
		topics[i] = t + events.DLQSuffix
	}
	return DLQCounterFunc(func(ctx context.Context) (map[string]int64, error) {
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("list dead-letter end offsets: %w", err)
		}
		starts, err := adm.ListStartOffsets(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("list dead-letter start offsets: %w", err)
		}
		counts := make(map[string]int64, len(topics))
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				return
			}
			n := o.Offset
			if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
				n -= s.Offset
			}
			counts[o.Topic] += n
		})
		return counts, nil
	})
}

// DLQ reports dead letters per topic. Dead letters are work for an operator,
// not an outage: the component is UP with its counts, and UNKNOWN when they
// cannot be read.
func DLQ(counter DLQCounter) Indicator {
	return Func{ComponentName: "dlq", IsCritical: false, Fn: func(ctx context.Context) Component {
		counts, err := counter.DLQCounts(ctx)
		if err != nil {
			return Component{Status: Unknown, Details: map[string]any{"error": err.Error()}}
		}
		var total int64
		for _, n := range counts {
			total += n
		}
		return Component{Status: Up, Details: map[string]any{"total": total, "topics": counts}}
	}}
}
