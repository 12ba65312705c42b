// Package ops serves the operator endpoints that look at Kafka itself and at
// the platform as a whole: topics with their partitions, watermarks, sizes
// and configuration; a bounded message browser with filters; producing a
// message; consumer groups with members, assignments and lag per partition,
// and resetting their offsets; the Kafka Connect API of the CDC connectors
// behind the API's own authentication; order and stock searches; and the
// live rates of the console's overview. This is what operators of Kafka UI,
// AKHQ, Debezium UI and pgAdmin reach for first.
package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/validation"
)

// Kafka answers questions about the cluster and acts on it.
type Kafka struct {
	client *kgo.Client
	adm    *kadm.Client
	// opts make the short-lived clients the browser and produce use.
	opts kafka.Options
}

// NewKafka returns the Kafka ops endpoints over client (for admin requests);
// the message browser and produce make their own short-lived clients from
// opts (brokers, TLS and SASL).
func NewKafka(client *kgo.Client, opts kafka.Options) *Kafka {
	return &Kafka{client: client, adm: kadm.NewClient(client), opts: opts}
}

// Routes lists the endpoints: reading needs the operator role (records may
// hold personal data), changing topics, records and offsets the admin role.
func (k *Kafka) Routes() []httpapi.Route {
	return []httpapi.Route{
		{Method: http.MethodGet, Pattern: "/api/v1/ops/topics", Role: httpapi.RoleOperator, Handler: k.serveTopics},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/topics", Role: httpapi.RoleAdmin, Handler: k.serveCreateTopic},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/topics/{topic}", Role: httpapi.RoleOperator, Handler: k.serveTopic},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/topics/{topic}/messages", Role: httpapi.RoleOperator, Handler: k.serveBrowse},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/topics/{topic}/messages", Role: httpapi.RoleAdmin, Handler: k.serveProduce},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/consumer-groups", Role: httpapi.RoleOperator, Handler: k.serveGroups},
		{Method: http.MethodGet, Pattern: "/api/v1/ops/consumer-groups/{group}", Role: httpapi.RoleOperator, Handler: k.serveGroup},
		{Method: http.MethodPost, Pattern: "/api/v1/ops/consumer-groups/{group}/offsets", Role: httpapi.RoleAdmin, Handler: k.serveResetOffsets},
	}
}

// PartitionInfo is one partition of a topic.
type PartitionInfo struct {
	Partition   int32   `json:"partition"`
	Leader      int32   `json:"leader"`
	Replicas    []int32 `json:"replicas,omitempty"`
	ISR         []int32 `json:"isr,omitempty"`
	StartOffset int64   `json:"start_offset"`
	EndOffset   int64   `json:"end_offset"`
	Messages    int64   `json:"messages"`
	SizeBytes   int64   `json:"size_bytes"`
}

// TopicInfo is one topic.
type TopicInfo struct {
	Name              string          `json:"name"`
	Internal          bool            `json:"internal"`
	Messages          int64           `json:"messages"`
	SizeBytes         int64           `json:"size_bytes"`
	ReplicationFactor int             `json:"replication_factor"`
	Partitions        []PartitionInfo `json:"partitions"`
	// Config holds the topic's settings that differ from the broker's
	// defaults, plus retention and cleanup policy (the ones people look
	// for); TopicDetail lists them all.
	Config map[string]string `json:"config,omitempty"`
}

// summaryConfigs are always shown in the topic list.
var summaryConfigs = map[string]bool{"cleanup.policy": true, "retention.ms": true, "retention.bytes": true}

// Topics lists every topic with its partitions, watermarks, sizes and the
// configuration that matters most.
func (k *Kafka) Topics(ctx context.Context) ([]TopicInfo, error) {
	details, err := k.adm.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	return k.describe(ctx, details, false)
}

func (k *Kafka) describe(ctx context.Context, details kadm.TopicDetails, allConfig bool) ([]TopicInfo, error) {
	names := details.Names()
	if len(names) == 0 {
		return []TopicInfo{}, nil
	}
	starts, err := k.adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	ends, err := k.adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	// Sizes and configuration are extras: a broker that does not answer
	// them still gets its topics listed.
	sizes := map[string]map[int32]int64{}
	if dirs, err := k.adm.DescribeAllLogDirs(ctx, details.TopicsSet()); err == nil {
		dirs.Each(func(d kadm.DescribedLogDir) {
			for t, ps := range d.Topics {
				for p, dp := range ps {
					if sizes[t] == nil {
						sizes[t] = map[int32]int64{}
					}
					sizes[t][p] += dp.Size
				}
			}
		})
	}
	configs := map[string]map[string]string{}
	if rcs, err := k.adm.DescribeTopicConfigs(ctx, names...); err == nil {
		for _, rc := range rcs {
			if rc.Err != nil {
				continue
			}
			m := map[string]string{}
			for _, c := range rc.Configs {
				dynamic := c.Source == kmsg.ConfigSourceDynamicTopicConfig
				if allConfig || dynamic || summaryConfigs[c.Key] {
					if c.Sensitive {
						m[c.Key] = "(sensitive)"
					} else {
						m[c.Key] = c.MaybeValue()
					}
				}
			}
			configs[rc.Name] = m
		}
	}
	out := make([]TopicInfo, 0, len(details))
	for _, d := range details.Sorted() {
		t := TopicInfo{Name: d.Topic, Internal: d.IsInternal || strings.HasPrefix(d.Topic, "__"), Config: configs[d.Topic],
			Partitions: []PartitionInfo{}}
		for _, p := range d.Partitions.Sorted() {
			pi := PartitionInfo{Partition: p.Partition, Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR,
				SizeBytes: sizes[d.Topic][p.Partition]}
			if o, ok := starts.Lookup(d.Topic, p.Partition); ok {
				pi.StartOffset = o.Offset
			}
			if o, ok := ends.Lookup(d.Topic, p.Partition); ok {
				pi.EndOffset = o.Offset
			}
			pi.Messages = max(0, pi.EndOffset-pi.StartOffset)
			t.Messages += pi.Messages
			t.SizeBytes += pi.SizeBytes
			t.ReplicationFactor = max(t.ReplicationFactor, len(p.Replicas))
			t.Partitions = append(t.Partitions, pi)
		}
		out = append(out, t)
	}
	return out, nil
}

// ErrNoSuchTopic means the topic does not exist.
var ErrNoSuchTopic = errors.New("no such topic")

// Topic describes one topic with its whole configuration.
func (k *Kafka) Topic(ctx context.Context, name string) (TopicInfo, error) {
	details, err := k.adm.ListTopics(ctx, name)
	if err != nil {
		return TopicInfo{}, err
	}
	d, ok := details[name]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return TopicInfo{}, ErrNoSuchTopic
	}
	if d.Err != nil {
		return TopicInfo{}, d.Err
	}
	ts, err := k.describe(ctx, kadm.TopicDetails{name: d}, true)
	if err != nil {
		return TopicInfo{}, err
	}
	return ts[0], nil
}

// NewTopic asks for a topic to be created.
type NewTopic struct {
	Name       string `json:"name"`
	Partitions int32  `json:"partitions"`
	// ReplicationFactor -1 (or 0) lets the broker choose its default.
	ReplicationFactor int16             `json:"replication_factor"`
	Config            map[string]string `json:"config"`
}

var (
	topicName  = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	configName = regexp.MustCompile(`^[a-z0-9.]{1,100}$`)
)

// Validate checks the request before the broker sees it.
func (n NewTopic) Validate() error {
	var errs validation.Errors
	if !topicName.MatchString(n.Name) || n.Name == "." || n.Name == ".." {
		errs.Add("name", "must be 1 to 249 letters, digits, '.', '_' or '-' (and not '.' or '..')")
	}
	if n.Partitions < 1 || n.Partitions > 1000 {
		errs.Add("partitions", "must be between 1 and 1000")
	}
	if n.ReplicationFactor < -1 || n.ReplicationFactor > 16 {
		errs.Add("replication_factor", "must be -1 (broker default) or between 1 and 16")
	}
	for key := range n.Config {
		if !configName.MatchString(key) {
			errs.Add("config", "key %q is not a topic configuration name", key)
		}
	}
	return errs.Err()
}

// ErrTopicExists means a topic of that name exists already.
var ErrTopicExists = errors.New("topic already exists")

// CreateTopic creates a topic.
func (k *Kafka) CreateTopic(ctx context.Context, n NewTopic) error {
	if err := n.Validate(); err != nil {
		return err
	}
	rf := n.ReplicationFactor
	if rf == 0 {
		rf = -1
	}
	cfg := map[string]*string{}
	for key, v := range n.Config {
		cfg[key] = &v
	}
	resp, err := k.adm.CreateTopic(ctx, n.Partitions, rf, cfg, n.Name)
	if resp.Err == nil && err != nil {
		// The broker's refusal comes back as the error itself.
		var ke *kerr.Error
		if !errors.As(err, &ke) {
			return err
		}
		resp.Err = err
	}
	switch {
	case errors.Is(resp.Err, kerr.TopicAlreadyExists):
		return ErrTopicExists
	case resp.Err != nil:
		msg := resp.Err.Error()
		if resp.ErrMessage != "" {
			msg += ": " + resp.ErrMessage
		}
		return &httpapi.BadRequestError{Status: http.StatusUnprocessableEntity, Message: "the broker refused the topic: " + msg}
	}
	return nil
}

// GroupLag is one partition's lag in a group.
type GroupLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Committed int64  `json:"committed"`
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
}

// GroupMember is one member of a group with what it was assigned.
type GroupMember struct {
	MemberID    string            `json:"member_id"`
	InstanceID  string            `json:"instance_id,omitempty"`
	ClientID    string            `json:"client_id"`
	Host        string            `json:"host"`
	Assignments []TopicPartitions `json:"assignments"`
}

// TopicPartitions names partitions of one topic.
type TopicPartitions struct {
	Topic      string  `json:"topic"`
	Partitions []int32 `json:"partitions"`
}

// GroupInfo is one consumer group.
type GroupInfo struct {
	Group        string        `json:"group"`
	State        string        `json:"state"`
	ProtocolType string        `json:"protocol_type,omitempty"`
	Protocol     string        `json:"protocol,omitempty"`
	Members      int           `json:"members"`
	MemberList   []GroupMember `json:"member_list,omitempty"`
	TotalLag     int64         `json:"total_lag"`
	Lag          []GroupLag    `json:"lag"`
	Error        string        `json:"error,omitempty"`
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
		out = append(out, groupInfo(gl, false))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// ErrNoSuchGroup means the consumer group does not exist.
var ErrNoSuchGroup = errors.New("no such consumer group")

// Group describes one group: its members, what each is assigned, and the
// lag of every partition it has committed offsets for.
func (k *Kafka) Group(ctx context.Context, group string) (GroupInfo, error) {
	lags, err := k.adm.Lag(ctx, group)
	if err != nil {
		return GroupInfo{}, err
	}
	gl, ok := lags[group]
	if !ok || gl.State == "Dead" || (gl.State == "" && len(gl.Lag) == 0) {
		return GroupInfo{}, ErrNoSuchGroup
	}
	if errors.Is(gl.DescribeErr, kerr.GroupIDNotFound) {
		return GroupInfo{}, ErrNoSuchGroup
	}
	return groupInfo(gl, true), nil
}

func groupInfo(gl kadm.DescribedGroupLag, members bool) GroupInfo {
	g := GroupInfo{Group: gl.Group, State: gl.State, ProtocolType: gl.ProtocolType, Protocol: gl.Protocol,
		Members: len(gl.Members), Lag: []GroupLag{}}
	if err := gl.Error(); err != nil {
		g.Error = err.Error()
	}
	for _, l := range gl.Lag.Sorted() {
		lag := GroupLag{Topic: l.Topic, Partition: l.Partition, Committed: l.Commit.At, Start: l.Start.Offset,
			End: l.End.Offset, Lag: l.Lag}
		if l.Member != nil {
			lag.Member = l.Member.ClientID
		}
		if lag.Lag > 0 {
			g.TotalLag += lag.Lag
		}
		g.Lag = append(g.Lag, lag)
	}
	if members {
		for _, m := range gl.Members {
			gm := GroupMember{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Assignments: []TopicPartitions{}}
			if m.InstanceID != nil {
				gm.InstanceID = *m.InstanceID
			}
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					ps := append([]int32(nil), t.Partitions...)
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					gm.Assignments = append(gm.Assignments, TopicPartitions{Topic: t.Topic, Partitions: ps})
				}
			}
			sort.Slice(gm.Assignments, func(i, j int) bool { return gm.Assignments[i].Topic < gm.Assignments[j].Topic })
			g.MemberList = append(g.MemberList, gm)
		}
	}
	return g
}

// Offset reset targets.
const (
	ResetEarliest  = "earliest"
	ResetLatest    = "latest"
	ResetTimestamp = "timestamp"
)

// ResetRequest moves a group's committed offsets.
type ResetRequest struct {
	// To is earliest, latest or timestamp.
	To string `json:"to"`
	// Timestamp is the time to move to (To = timestamp): each partition's
	// first record at or after it, or its end.
	Timestamp *time.Time `json:"timestamp,omitempty"`
	// Topics limits the reset; empty means every topic the group has
	// committed offsets for.
	Topics []string `json:"topics,omitempty"`
	// DryRun computes the new offsets without committing them.
	DryRun bool `json:"dry_run"`
}

// Validate checks the request.
func (r ResetRequest) Validate() error {
	var errs validation.Errors
	switch r.To {
	case ResetEarliest, ResetLatest:
	case ResetTimestamp:
		if r.Timestamp == nil {
			errs.Add("timestamp", "is required when to is timestamp (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
		}
	default:
		errs.Add("to", "must be earliest, latest or timestamp")
	}
	return errs.Err()
}

// OffsetMove is one partition's committed offset before and after a reset.
type OffsetMove struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	From      int64  `json:"from"`
	To        int64  `json:"to"`
}

// ResetResult says what a reset did (or would do).
type ResetResult struct {
	Group  string       `json:"group"`
	DryRun bool         `json:"dry_run"`
	Moves  []OffsetMove `json:"moves"`
}

// ErrGroupActive means the group has members: Kafka only lets offsets of an
// empty group be changed from outside (the members would overwrite them).
var ErrGroupActive = errors.New("the group has active members; stop its consumers before resetting offsets")

// ResetOffsets moves the group's committed offsets to the earliest or
// latest offset of each partition, or to the first record at or after a
// time. It refuses while the group has members.
func (k *Kafka) ResetOffsets(ctx context.Context, group string, req ResetRequest) (ResetResult, error) {
	if err := req.Validate(); err != nil {
		return ResetResult{}, err
	}
	g, err := k.Group(ctx, group)
	if err != nil {
		return ResetResult{}, err
	}
	if g.Members > 0 {
		return ResetResult{}, ErrGroupActive
	}
	want := map[string]bool{}
	for _, t := range req.Topics {
		want[t] = true
	}
	current := map[string]map[int32]int64{}
	var topics []string
	for _, l := range g.Lag {
		if len(want) > 0 && !want[l.Topic] {
			continue
		}
		if current[l.Topic] == nil {
			current[l.Topic] = map[int32]int64{}
			topics = append(topics, l.Topic)
		}
		current[l.Topic][l.Partition] = l.Committed
	}
	for t := range want {
		if current[t] == nil {
			// A topic the group never committed for: reset all its partitions.
			current[t] = map[int32]int64{}
			topics = append(topics, t)
		}
	}
	res := ResetResult{Group: group, DryRun: req.DryRun, Moves: []OffsetMove{}}
	if len(topics) == 0 {
		return res, nil
	}
	var listed kadm.ListedOffsets
	switch req.To {
	case ResetEarliest:
		listed, err = k.adm.ListStartOffsets(ctx, topics...)
	case ResetLatest:
		listed, err = k.adm.ListEndOffsets(ctx, topics...)
	default:
		listed, err = k.adm.ListOffsetsAfterMilli(ctx, req.Timestamp.UnixMilli(), topics...)
	}
	if err != nil {
		return ResetResult{}, err
	}
	if err := listed.Error(); err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return ResetResult{}, validation.Errors{{Field: "topics", Message: "names a topic that does not exist"}}
		}
		return ResetResult{}, err
	}
	offsets := kadm.Offsets{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		from, ok := current[o.Topic][o.Partition]
		if !ok {
			from = -1
		}
		res.Moves = append(res.Moves, OffsetMove{Topic: o.Topic, Partition: o.Partition, From: from, To: o.Offset})
		offsets.Add(kadm.Offset{Topic: o.Topic, Partition: o.Partition, At: o.Offset, LeaderEpoch: -1})
	})
	sort.Slice(res.Moves, func(i, j int) bool {
		if res.Moves[i].Topic != res.Moves[j].Topic {
			return res.Moves[i].Topic < res.Moves[j].Topic
		}
		return res.Moves[i].Partition < res.Moves[j].Partition
	})
	if req.DryRun {
		return res, nil
	}
	if err := k.adm.CommitAllOffsets(ctx, group, offsets); err != nil {
		// A member that joined since the check makes the broker refuse.
		if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
			return ResetResult{}, ErrGroupActive
		}
		return ResetResult{}, fmt.Errorf("commit offsets of %s: %w", group, err)
	}
	return res, nil
}

func (k *Kafka) serveTopics(w http.ResponseWriter, r *http.Request) {
	topics, err := k.Topics(r.Context())
	if err != nil {
		kafkaDown(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"topics": topics})
}

func (k *Kafka) serveTopic(w http.ResponseWriter, r *http.Request) {
	t, err := k.Topic(r.Context(), r.PathValue("topic"))
	if errors.Is(err, ErrNoSuchTopic) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("topic %q does not exist", r.PathValue("topic")))
		return
	}
	if err != nil {
		kafkaDown(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, t)
}

func (k *Kafka) serveCreateTopic(w http.ResponseWriter, r *http.Request) {
	var n NewTopic
	if err := httpapi.DecodeJSON(r, &n); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	err := k.CreateTopic(r.Context(), n)
	var verrs validation.Errors
	var bad *httpapi.BadRequestError
	switch {
	case errors.As(err, &verrs), errors.As(err, &bad):
		httpapi.WriteError(w, r, err)
		return
	case errors.Is(err, ErrTopicExists):
		httpapi.WriteProblem(w, r, http.StatusConflict, fmt.Sprintf("topic %q already exists", n.Name))
		return
	case err != nil:
		kafkaDown(w, r, err)
		return
	}
	httpapi.LoggerFrom(r.Context()).InfoContext(r.Context(), "topic created", "topic", n.Name, "partitions", n.Partitions,
		"actor", httpapi.PrincipalFrom(r.Context()).Actor())
	t, err := k.Topic(r.Context(), n.Name)
	if err != nil {
		httpapi.WriteJSON(w, http.StatusCreated, map[string]any{"name": n.Name})
		return
	}
	w.Header().Set("Location", "/api/v1/ops/topics/"+n.Name)
	httpapi.WriteJSON(w, http.StatusCreated, t)
}

func (k *Kafka) serveGroups(w http.ResponseWriter, r *http.Request) {
	groups, err := k.Groups(r.Context())
	if err != nil {
		kafkaDown(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"consumer_groups": groups})
}

func (k *Kafka) serveGroup(w http.ResponseWriter, r *http.Request) {
	g, err := k.Group(r.Context(), r.PathValue("group"))
	if errors.Is(err, ErrNoSuchGroup) {
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("consumer group %q does not exist", r.PathValue("group")))
		return
	}
	if err != nil {
		kafkaDown(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, g)
}

func (k *Kafka) serveResetOffsets(w http.ResponseWriter, r *http.Request) {
	var req ResetRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	group := r.PathValue("group")
	res, err := k.ResetOffsets(r.Context(), group, req)
	var verrs validation.Errors
	switch {
	case errors.As(err, &verrs):
		httpapi.WriteValidation(w, r, verrs)
		return
	case errors.Is(err, ErrNoSuchGroup):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("consumer group %q does not exist", group))
		return
	case errors.Is(err, ErrGroupActive):
		httpapi.WriteProblem(w, r, http.StatusConflict, fmt.Sprintf("consumer group %q: %v", group, err))
		return
	case err != nil:
		kafkaDown(w, r, err)
		return
	}
	if !req.DryRun {
		httpapi.LoggerFrom(r.Context()).InfoContext(r.Context(), "consumer group offsets reset", "group", group, "to", req.To,
			"partitions", len(res.Moves), "actor", httpapi.PrincipalFrom(r.Context()).Actor())
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

// kafkaDown answers 503 for a cluster that did not answer.
func kafkaDown(w http.ResponseWriter, r *http.Request, err error) {
	httpapi.WriteProblem(w, r, http.StatusServiceUnavailable, "Kafka did not answer: "+err.Error())
}

func parseInt32List(s string) ([]int32, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int32
	for _, part := range strings.Split(s, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(part), 10, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a partition number", part)
		}
		out = append(out, int32(n))
	}
	return out, nil
}
