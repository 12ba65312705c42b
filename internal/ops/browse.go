package ops

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/validation"
)

// Where a browse starts.
const (
	FromOldest    = "oldest"
	FromNewest    = "newest"
	FromOffset    = "offset"
	FromTimestamp = "timestamp"
)

// Browse bounds.
const (
	DefaultBrowseLimit  = 50
	MaxBrowseLimit      = 500
	DefaultBrowseBudget = 5000
	MaxBrowseBudget     = 100_000
	// browseWait bounds one call; a longer scan continues with the cursor.
	browseWait = 3 * time.Second
)

// BrowseRequest is one step of a bounded scan of a topic. The first step
// names where to start; each answer carries a cursor for the next step, so
// a scan of any size runs as short calls the console can show progress for
// and cancel between (it simply stops asking).
type BrowseRequest struct {
	Topic string
	// Partitions to read; empty means all.
	Partitions []int32
	// From is oldest, newest, offset or timestamp. Newest reads backwards
	// from the end and returns the newest records first.
	From      string
	Offset    int64
	Timestamp time.Time
	Filter    Filter
	// Limit is how many matching records one step returns at most.
	Limit int
	// Budget is how many records one step examines at most.
	Budget int
	// Cursor continues a scan; From, Offset, Timestamp and Partitions are
	// then taken from it.
	Cursor string
}

// BrowseResult is one step's answer.
type BrowseResult struct {
	Messages []Message `json:"messages"`
	// Scanned is how many records this step examined.
	Scanned int64 `json:"scanned"`
	// Cursor continues the scan; empty when Done.
	Cursor   string   `json:"cursor,omitempty"`
	Done     bool     `json:"done"`
	Progress Progress `json:"progress"`
}

// Progress is how far a whole scan has come.
type Progress struct {
	// Direction is forward (oldest first) or backward (newest first).
	Direction string `json:"direction"`
	// Total is how many records the scan covers; Scanned how many of them
	// every step so far has examined.
	Total      int64               `json:"total"`
	Scanned    int64               `json:"scanned"`
	Partitions []PartitionProgress `json:"partitions"`
}

// PartitionProgress is one partition's range and position. Forward scans
// move Next up from From to To; backward ones move it down from To to From.
type PartitionProgress struct {
	Partition int32 `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
	Next      int64 `json:"next"`
	Done      bool  `json:"done"`
}

// cursor is the scan's state between steps.
type cursor struct {
	Topic string              `json:"t"`
	Dir   string              `json:"d"`
	Parts []PartitionProgress `json:"p"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, topic string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Topic != topic || (c.Dir != "forward" && c.Dir != "backward") {
		return cursor{}, validation.Errors{{Field: "cursor", Message: "is not a cursor a browse of this topic returned"}}
	}
	return c, nil
}

func (c cursor) progress() Progress {
	p := Progress{Direction: c.Dir, Partitions: c.Parts}
	for _, pp := range c.Parts {
		p.Total += pp.To - pp.From
		if c.Dir == "forward" {
			p.Scanned += pp.Next - pp.From
		} else {
			p.Scanned += pp.To - pp.Next
		}
	}
	return p
}

func (c cursor) done() bool {
	for _, p := range c.Parts {
		if !p.Done {
			return false
		}
	}
	return true
}

// Browse runs one step of a scan.
func (k *Kafka) Browse(ctx context.Context, req BrowseRequest) (BrowseResult, error) {
	if err := req.normalise(); err != nil {
		return BrowseResult{}, err
	}
	var (
		c   cursor
		err error
	)
	if req.Cursor != "" {
		c, err = decodeCursor(req.Cursor, req.Topic)
	} else {
		c, err = k.startScan(ctx, req)
	}
	if err != nil {
		return BrowseResult{}, err
	}
	res := BrowseResult{Messages: []Message{}}
	if !c.done() {
		if c.Dir == "forward" {
			err = k.stepForward(ctx, &c, req, &res)
		} else {
			err = k.stepBackward(ctx, &c, req, &res)
		}
		if err != nil {
			return BrowseResult{}, err
		}
	}
	res.Progress = c.progress()
	res.Done = c.done()
	if !res.Done {
		res.Cursor = c.encode()
	}
	return res, nil
}

func (req *BrowseRequest) normalise() error {
	var errs validation.Errors
	if req.Limit == 0 {
		req.Limit = DefaultBrowseLimit
	}
	if req.Budget == 0 {
		req.Budget = DefaultBrowseBudget
	}
	if req.Limit < 1 || req.Limit > MaxBrowseLimit {
		errs.Add("limit", "must be between 1 and %d", MaxBrowseLimit)
	}
	if req.Budget < 1 || req.Budget > MaxBrowseBudget {
		errs.Add("budget", "must be between 1 and %d", MaxBrowseBudget)
	}
	if req.Cursor == "" {
		switch req.From {
		case "":
			req.From = FromOldest
		case FromOldest, FromNewest:
		case FromOffset:
			if req.Offset < 0 {
				errs.Add("offset", "must be zero or more")
			}
		case FromTimestamp:
			if req.Timestamp.IsZero() {
				errs.Add("timestamp", "is required with from=timestamp (RFC 3339)")
			}
		default:
			errs.Add("from", "must be oldest, newest, offset or timestamp")
		}
	}
	if err := req.Filter.compile(); err != nil {
		var fe validation.Errors
		if errors.As(err, &fe) {
			errs = append(errs, fe...)
		}
	}
	return errs.Err()
}

// startScan fixes the scan's range: from the chosen start to each
// partition's end now, so records produced meanwhile do not make it endless.
func (k *Kafka) startScan(ctx context.Context, req BrowseRequest) (cursor, error) {
	details, err := k.adm.ListTopics(ctx, req.Topic)
	if err != nil {
		return cursor{}, err
	}
	d, ok := details[req.Topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return cursor{}, ErrNoSuchTopic
	}
	if d.Err != nil {
		return cursor{}, d.Err
	}
	parts := req.Partitions
	if len(parts) == 0 {
		parts = d.Partitions.Numbers()
	}
	for _, p := range parts {
		if _, ok := d.Partitions[p]; !ok {
			return cursor{}, validation.Errors{{Field: "partitions", Message: fmt.Sprintf("topic %s has no partition %d", req.Topic, p)}}
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })
	starts, err := k.adm.ListStartOffsets(ctx, req.Topic)
	if err != nil {
		return cursor{}, err
	}
	ends, err := k.adm.ListEndOffsets(ctx, req.Topic)
	if err != nil {
		return cursor{}, err
	}
	var at kadm.ListedOffsets
	if req.From == FromTimestamp {
		if at, err = k.adm.ListOffsetsAfterMilli(ctx, req.Timestamp.UnixMilli(), req.Topic); err != nil {
			return cursor{}, err
		}
	}
	c := cursor{Topic: req.Topic, Dir: "forward"}
	if req.From == FromNewest {
		c.Dir = "backward"
	}
	for _, p := range parts {
		var lo, hi int64
		if o, ok := starts.Lookup(req.Topic, p); ok {
			lo = o.Offset
		}
		if o, ok := ends.Lookup(req.Topic, p); ok {
			hi = o.Offset
		}
		hi = max(hi, lo)
		from := lo
		switch req.From {
		case FromOffset:
			from = min(max(req.Offset, lo), hi)
		case FromTimestamp:
			from = hi
			if o, ok := at.Lookup(req.Topic, p); ok && o.Err == nil && o.Offset >= 0 {
				from = min(max(o.Offset, lo), hi)
			}
		}
		pp := PartitionProgress{Partition: p, From: from, To: hi, Next: from}
		if c.Dir == "backward" {
			pp.Next = hi
		}
		pp.Done = pp.From >= pp.To
		c.Parts = append(c.Parts, pp)
	}
	return c, nil
}

// window is the part of one partition a step reads: [start, stop).
type window struct{ start, stop int64 }

// read fetches the records of windows (at most budget of them, within the
// step's time), handing each to visit in partition offset order; visit
// returns false to stop. It returns, per partition, the offset after the
// last record visited, and the partitions that returned no record at all
// (nothing more is readable there, e.g. only transaction markers are left).
func (k *Kafka) read(ctx context.Context, topic string, windows map[int32]window, budget int,
	visit func(rec *kgo.Record) bool) (next map[int32]int64, silent map[int32]bool, scanned int64, err error) {
	next = map[int32]int64{}
	silent = map[int32]bool{}
	offsets := map[int32]kgo.Offset{}
	for p, w := range windows {
		next[p] = w.start
		if w.start < w.stop {
			offsets[p] = kgo.NewOffset().At(w.start)
			silent[p] = true
		}
	}
	if len(offsets) == 0 {
		return next, silent, 0, nil
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.opts.Brokers...),
		kgo.ClientID(clientName(k.opts.ClientID, "browser")),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.FetchMaxBytes(16 << 20),
	}
	opts = append(opts, k.opts.Extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("browser client: %w", err)
	}
	defer cl.Close()
	stepCtx, cancel := context.WithTimeout(ctx, browseWait)
	defer cancel()
	open := len(offsets)
	for open > 0 && scanned < int64(budget) {
		fetches := cl.PollRecords(stepCtx, 2000)
		if stepCtx.Err() != nil {
			break
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue
			}
			return nil, nil, 0, fmt.Errorf("fetch %s[%d]: %w", fe.Topic, fe.Partition, fe.Err)
		}
		stop := false
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if stop {
				return
			}
			w := windows[fp.Partition]
			for _, rec := range fp.Records {
				if rec.Offset >= w.stop || next[fp.Partition] >= w.stop {
					break
				}
				silent[fp.Partition] = false
				next[fp.Partition] = rec.Offset + 1
				scanned++
				if !visit(rec) || scanned >= int64(budget) {
					stop = true
					return
				}
			}
			if next[fp.Partition] >= w.stop || fp.HighWatermark <= next[fp.Partition] {
				if _, reading := offsets[fp.Partition]; reading {
					delete(offsets, fp.Partition)
					cl.PauseFetchPartitions(map[string][]int32{topic: {fp.Partition}})
					open--
				}
			}
		})
		if stop {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, nil, 0, ctx.Err()
	}
	return next, silent, scanned, nil
}

func (k *Kafka) stepForward(ctx context.Context, c *cursor, req BrowseRequest, res *BrowseResult) error {
	windows := map[int32]window{}
	for _, p := range c.Parts {
		if !p.Done {
			windows[p.Partition] = window{p.Next, p.To}
		}
	}
	next, silent, scanned, err := k.read(ctx, c.Topic, windows, req.Budget, func(rec *kgo.Record) bool {
		if req.Filter.match(rec) {
			res.Messages = append(res.Messages, toMessage(rec))
		}
		return len(res.Messages) < req.Limit
	})
	if err != nil {
		return err
	}
	res.Scanned = scanned
	for i := range c.Parts {
		p := &c.Parts[i]
		if p.Done {
			continue
		}
		p.Next = next[p.Partition]
		// A step that ran out of time without a single record from a
		// partition finds nothing readable left in its range.
		p.Done = p.Next >= p.To || (silent[p.Partition] && scanned < int64(req.Budget) && len(res.Messages) < req.Limit)
	}
	sort.SliceStable(res.Messages, func(i, j int) bool {
		if res.Messages[i].Timestamp != res.Messages[j].Timestamp {
			return res.Messages[i].Timestamp < res.Messages[j].Timestamp
		}
		return res.Messages[i].Partition < res.Messages[j].Partition
	})
	return nil
}

// stepBackward reads the next window below each partition's position and
// returns its newest matches first. Windows share the budget evenly.
func (k *Kafka) stepBackward(ctx context.Context, c *cursor, req BrowseRequest, res *BrowseResult) error {
	open := 0
	for _, p := range c.Parts {
		if !p.Done {
			open++
		}
	}
	chunk := int64(max(1, req.Budget/max(open, 1)))
	windows := map[int32]window{}
	for _, p := range c.Parts {
		if !p.Done {
			windows[p.Partition] = window{max(p.From, p.Next-chunk), p.Next}
		}
	}
	var matched []*kgo.Record
	_, _, scanned, err := k.read(ctx, c.Topic, windows, req.Budget, func(rec *kgo.Record) bool {
		if req.Filter.match(rec) {
			matched = append(matched, rec)
		}
		return true
	})
	if err != nil {
		return err
	}
	res.Scanned = scanned
	// Newest first; keep Limit of them, and leave the rest for the next
	// step by moving each partition only past what was returned.
	sort.SliceStable(matched, func(i, j int) bool {
		if !matched[i].Timestamp.Equal(matched[j].Timestamp) {
			return matched[i].Timestamp.After(matched[j].Timestamp)
		}
		return matched[i].Offset > matched[j].Offset
	})
	dropped := map[int32]bool{}
	lowestKept := map[int32]int64{}
	for i, rec := range matched {
		if i >= req.Limit {
			dropped[rec.Partition] = true
			continue
		}
		res.Messages = append(res.Messages, toMessage(rec))
		if o, ok := lowestKept[rec.Partition]; !ok || rec.Offset < o {
			lowestKept[rec.Partition] = rec.Offset
		}
	}
	for i := range c.Parts {
		p := &c.Parts[i]
		w, ok := windows[p.Partition]
		if !ok {
			continue
		}
		// A partition whose matches were all returned moves to the window's
		// start; one with matches left over moves only past those returned
		// (or not at all when none was), and its window is read again.
		if !dropped[p.Partition] {
			p.Next = w.start
		} else if o, ok := lowestKept[p.Partition]; ok {
			p.Next = o
		}
		p.Done = p.Next <= p.From
	}
	return nil
}

// ProduceRequest is a record to publish by hand.
type ProduceRequest struct {
	Key     *string           `json:"key"`
	Value   *string           `json:"value"`
	Headers map[string]string `json:"headers"`
	// Partition, when set, picks the partition; otherwise the key does, as
	// for every TrackOps producer.
	Partition *int32 `json:"partition"`
}

// Produced is where a produced record went.
type Produced struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Timestamp string `json:"timestamp"`
}

// Produce publishes one record to topic and waits for Kafka's acknowledgement.
func (k *Kafka) Produce(ctx context.Context, topic string, req ProduceRequest) (Produced, error) {
	t, err := k.Topic(ctx, topic)
	if err != nil {
		return Produced{}, err
	}
	if req.Partition != nil && (*req.Partition < 0 || int(*req.Partition) >= len(t.Partitions)) {
		return Produced{}, validation.Errors{{Field: "partition", Message: fmt.Sprintf("topic %s has partitions 0 to %d", topic, len(t.Partitions)-1)}}
	}
	rec := &kgo.Record{Topic: topic}
	if req.Key != nil {
		rec.Key = []byte(*req.Key)
	}
	if req.Value != nil {
		rec.Value = []byte(*req.Value)
	}
	names := make([]string, 0, len(req.Headers))
	for h := range req.Headers {
		names = append(names, h)
	}
	sort.Strings(names)
	for _, h := range names {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: h, Value: []byte(req.Headers[h])})
	}
	partitioner := kgo.StickyKeyPartitioner(nil)
	if req.Partition != nil {
		rec.Partition = *req.Partition
		partitioner = kgo.ManualPartitioner()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.opts.Brokers...),
		kgo.ClientID(clientName(k.opts.ClientID, "console-producer")),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(partitioner),
		kgo.RecordDeliveryTimeout(15 * time.Second),
	}
	opts = append(opts, k.opts.Extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return Produced{}, err
	}
	defer cl.Close()
	out, err := cl.ProduceSync(ctx, rec).First()
	if err != nil {
		return Produced{}, err
	}
	return Produced{Topic: out.Topic, Partition: out.Partition, Offset: out.Offset,
		Timestamp: out.Timestamp.UTC().Format(time.RFC3339Nano)}, nil
}

func clientName(base, suffix string) string {
	if base == "" {
		base = "trackops"
	}
	return base + "-" + suffix
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// ParseBrowse reads a BrowseRequest from query parameters: partitions
// (comma list), from, offset, timestamp (RFC 3339), key, header, json_path,
// json_value, text, limit, budget and cursor.
func ParseBrowse(topic string, q map[string][]string) (BrowseRequest, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var errs validation.Errors
	req := BrowseRequest{Topic: topic, From: get("from"), Cursor: get("cursor"), Filter: Filter{
		Key: get("key"), Header: get("header"), JSONPath: get("json_path"), JSONValue: get("json_value"), Text: get("text")}}
	var err error
	if req.Partitions, err = parseInt32List(get("partitions")); err != nil {
		errs.Add("partitions", "%v", err)
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"limit", &req.Limit}, {"budget", &req.Budget}} {
		if v := get(f.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs.Add(f.name, "must be a whole number")
			}
			*f.dst = n
		}
	}
	if v := get("offset"); v != "" {
		if req.Offset, err = strconv.ParseInt(v, 10, 64); err != nil {
			errs.Add("offset", "must be a whole number")
		}
	}
	if v := get("timestamp"); v != "" {
		if req.Timestamp, err = time.Parse(time.RFC3339Nano, v); err != nil {
			errs.Add("timestamp", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		}
	}
	if len(req.Cursor) > 8192 {
		errs.Add("cursor", "is too long")
	}
	return req, errs.Err()
}

func (k *Kafka) serveBrowse(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	req, err := ParseBrowse(topic, r.URL.Query())
	if err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	res, err := k.Browse(r.Context(), req)
	var verrs validation.Errors
	switch {
	case errors.As(err, &verrs):
		httpapi.WriteValidation(w, r, verrs)
	case errors.Is(err, ErrNoSuchTopic):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("topic %q does not exist", topic))
	case r.Context().Err() != nil:
		// The console cancelled the step: nobody reads an answer.
		return
	case err != nil:
		kafkaDown(w, r, err)
	default:
		httpapi.WriteJSON(w, http.StatusOK, res)
	}
}

func (k *Kafka) serveProduce(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	var req ProduceRequest
	if err := httpapi.DecodeJSON(r, &req); err != nil {
		httpapi.WriteError(w, r, err)
		return
	}
	if req.Value == nil && req.Key == nil {
		httpapi.WriteValidation(w, r, validation.Errors{{Field: "value", Message: "give a value, a key, or both"}})
		return
	}
	out, err := k.Produce(r.Context(), topic, req)
	var verrs validation.Errors
	switch {
	case errors.As(err, &verrs):
		httpapi.WriteValidation(w, r, verrs)
		return
	case errors.Is(err, ErrNoSuchTopic):
		httpapi.WriteProblem(w, r, http.StatusNotFound, fmt.Sprintf("topic %q does not exist", topic))
		return
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		httpapi.WriteProblem(w, r, http.StatusRequestEntityTooLarge, "the broker refused the record: "+err.Error())
		return
	case err != nil:
		kafkaDown(w, r, err)
		return
	}
	httpapi.LoggerFrom(r.Context()).InfoContext(r.Context(), "record produced by hand", "topic", topic,
		"partition", out.Partition, "offset", out.Offset, "actor", httpapi.PrincipalFrom(r.Context()).Actor())
	httpapi.WriteJSON(w, http.StatusCreated, out)
}
