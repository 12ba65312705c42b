// Package ops serves the operator endpoints that look at Kafka itself:
// topics with their partitions and offsets, and consumer groups with their
// lag per partition — what Kafka UI and AKHQ users reach for first.
package ops

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/httpapi"
)

// Kafka answers questions about the cluster.
type Kafka struct {
	adm *kadm.Client
}

// NewKafka returns the Kafka ops endpoints over client.
func NewKafka(client *kgo.Client) *Kafka { return &Kafka{adm: kadm.NewClient(client)} }

// Routes lists the endpoints; they are for operators and admins to read.
func (k *Kafka) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/topics", Role: httpapi.RoleOperator, Handler: k.serveTopics},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/consumer-groups", Role: httpapi.RoleOperator, Handler: k.serveGroups},
	}
}

// PartitionInfo is one partition of a topic.
type PartitionInfo struct {
	Partition   int32 `json:"partition"`
	Leader      int32 `json:"leader"`
	StartOffset int64 `json:"start_offset"`
	EndOffset   int64 `json:"end_offset"`
}

// TopicInfo is one topic.
type TopicInfo struct {
	Name       string          `json:"name"`
	Internal   bool            `json:"internal"`
	Messages   int64           `json:"messages"`
	Partitions []PartitionInfo `json:"partitions"`
}

// Topics lists every topic with its partitions and offsets.
func (k *Kafka) Topics(ctx context.Context) ([]TopicInfo, error) {
	details, err := k.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	names := details.Names()
	starts, err := k.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	ends, err := k.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	out := make([]TopicInfo, 0, len(details))
	for _, d := range details.Sorted() {
		t := TopicInfo{Name: d.Topic, Internal: d.IsInternal || strings.HasPrefix(d.Topic, "__")}
		for _, p := range d.Partitions.Sorted() {
			pi := PartitionInfo{Partition: p.Partition, Leader: p.Leader}
			if o, ok := starts.Lookup(d.Topic, p.Partition); ok {
				pi.StartOffset = o.Offset
			}
			if o, ok := ends.Lookup(d.Topic, p.Partition); ok {
				pi.EndOffset = o.Offset
			}
			t.Messages += pi.EndOffset - pi.StartOffset
			t.Partitions = append(t.Partitions, pi)
		}
		out = append(out, t)
	}
	return out, nil
}

// GroupLag is one partition's lag in a group.
type GroupLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
}

// GroupInfo is one consumer group.
type GroupInfo struct {
	Group    string     `json:"group"`
	State    string     `json:"state"`
	Members  int        `json:"members"`
	TotalLag int64      `json:"total_lag"`
	Lag      []GroupLag `json:"lag"`
}

// Groups lists consumer groups with their lag per partition.
func (k *Kafka) Groups(ctx context.Context) ([]GroupInfo, error) {
	listed, err := k.adm.ListGroups(ctx)
	if err != nil {
		return nil, err
	}
	lags, err := k.adm.Lag(ctx, listed.Groups()...)
	if err != nil {
		return nil, err
	}
	out := make([]GroupInfo, 0, len(lags))
	for _, gl := range lags.Sorted() {
		g := GroupInfo{Group: gl.Group, State: gl.State, Members: len(gl.Members)}
		for _, l := range gl.Lag.Sorted() {
			lag := GroupLag{Topic: l.Topic, Partition: l.Partition, Committed: l.Commit.At, End: l.End.Offset, Lag: l.Lag}
			if l.Member != nil {
				lag.Member = l.Member.ClientID
			}
			if lag.Lag > 0 {
				g.TotalLag += lag.Lag
			}
			g.Lag = append(g.Lag, lag)
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

func (k *Kafka) serveTopics(w http.ResponseWriter, r *http.Request) {
	topics, err := k.Topics(r.Context())
	if err != nil {
		httpapi.WriteProblem(w, r, http.StatusServiceUnavailable, "Kafka did not answer: "+err.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"topics": topics})
}

func (k *Kafka) serveGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := k.Groups(r.Context())
	if err != nil {
		httpapi.WriteProblem(w, r, http.StatusServiceUnavailable, "Kafka did not answer: "+err.Error())
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"consumer_groups": groups})
}
