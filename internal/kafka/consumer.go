package kafka

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/logging"
)

// Handler processes one record. A nil error marks it done. Any other error is
// retried with back-off, unless it is permanent (IsPermanent), in which case
// the record goes to the dead-letter topic at once. Consumers of application
// events give an events.Handler instead (ConsumerConfig.Events), which never
// sees the record; a record Handler is for consumers of the transport itself,
// such as the DLQ monitor, which reads the dead letters' headers.
//
// It is an alias, so a wrapper written against the plain function type (the
// tracing's) fits Options.WrapHandler as it is.
type Handler = func(ctx context.Context, rec *kgo.Record) error

// RetryPolicy is exponential back-off between attempts at one record.
type RetryPolicy struct {
	// Attempts is the total number of tries, the first included.
	Attempts int
	// Initial is the wait after the first failure.
	Initial time.Duration
	// Multiplier grows the wait after each further failure.
	Multiplier float64
	// Max caps the wait.
	Max time.Duration
}

// DefaultRetry is the seed's policy: 3 attempts, 1 s then ×2, at most 10 s.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{Attempts: 3, Initial: time.Second, Multiplier: 2, Max: 10 * time.Second}
}

// IsZero reports whether p is unset.
func (p RetryPolicy) IsZero() bool { return p == RetryPolicy{} }

// normalised returns p with nonsensical values made safe: at least one
// attempt, no negative waits, a multiplier of at least 1 and a cap no lower
// than the first wait.
func (p RetryPolicy) normalised() RetryPolicy {
	p.Attempts = max(p.Attempts, 1)
	p.Initial = max(p.Initial, 0)
	if p.Multiplier < 1 {
		p.Multiplier = 1
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

// Budget is the total back-off a record that always fails waits before it is
// dead-lettered: the longest a partition stalls on one poison record (handler
// time not included).
func (p RetryPolicy) Budget() time.Duration {
	var total time.Duration
	for a := 1; a < p.Attempts; a++ {
		total += p.Backoff(a)
	}
	return total
}

// Backoff is the wait after the given failed attempt (1-based).
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	d := float64(p.Initial)
	for i := 1; i < attempt && time.Duration(d) < p.Max; i++ {
		d *= p.Multiplier
	}
	if time.Duration(d) > p.Max {
		return p.Max
	}
	return time.Duration(d)
}

// IsPermanent reports whether err is a failure no retry can fix: one the
// handler marked events.Permanent, a malformed event (events.ErrMalformed),
// or a JSON syntax or type error (a record that does not parse today will
// not parse tomorrow). Such a record is dead-lettered at once.
func IsPermanent(err error) bool {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	return events.IsPermanent(err) || errors.As(err, &syntax) || errors.As(err, &typ)
}

// Spring Kafka's DeadLetterPublishingRecoverer header names, so tools and
// consumers built for Spring read TrackOps' dead letters as they are.
const (
	HeaderDLTOriginalTopic     = "kafka_dlt-original-topic"
	HeaderDLTOriginalPartition = "kafka_dlt-original-partition"
	HeaderDLTOriginalOffset    = "kafka_dlt-original-offset"
	HeaderDLTOriginalTimestamp = "kafka_dlt-original-timestamp"
	HeaderDLTOriginalGroup     = "kafka_dlt-original-consumer-group"
	HeaderDLTExceptionFQCN     = "kafka_dlt-exception-fqcn"
	HeaderDLTExceptionMessage  = "kafka_dlt-exception-message"
	HeaderDLTExceptionTrace    = "kafka_dlt-exception-stacktrace"
	// HeaderDLTAttempts is TrackOps' own: how often the record was tried.
	HeaderDLTAttempts = "trackops_dlt-attempts"
)

// ConsumerConfig describes one consumer group member.
type ConsumerConfig struct {
	Options
	// Group is the consumer group id.
	Group string
	// Topics are consumed; a name starting with "^" is a regular expression.
	Topics []string
	// Events handles each record's application event: the runner decodes
	// the record's CloudEvents envelope and hands the event over; a record
	// that is no event is dead-lettered at once (events.ErrMalformed).
	// Exactly one of Events and Handler is set.
	Events events.Handler
	// Handler processes each record as it is, for consumers of the
	// transport itself (the DLQ monitor).
	Handler Handler
	// Retry is the back-off policy; the zero value means Options.ConsumerRetry,
	// or DefaultRetry when that is unset too.
	Retry RetryPolicy
	// Logger receives progress and failures.
	Logger *slog.Logger
	// DeadLetter, when false, keeps retrying a failing record forever
	// instead of dead-lettering it (for consumers of dead-letter topics).
	DisableDeadLetter bool
	// DurableCommits makes the consumer wait on Options.Durability before
	// each offset commit, for handlers that produce to Kafka themselves
	// (e.g. a transform of consumed records): a committed offset never covers a record
	// whose produced output the broker could still lose. Dead letters are
	// always waited for.
	DurableCommits bool
	// KeyConcurrency is how many keys of one partition are handled at once
	// (default 16). Records of one key are always handled one after another,
	// in offset order; 1 handles a partition strictly in sequence.
	KeyConcurrency int
}

// Consumer runs a Handler over a consumer group's records with blocking
// per-key retries: records of one key (one order) are handled in offset
// order, and a failing record holds back the records of its key behind it
// (at most RetryPolicy.Budget of delay per poison record). Different keys of
// a partition are handled concurrently (KeyConcurrency), which lets their
// database commits share WAL flushes. Records are handed to their key's
// worker as they arrive: a slow or retrying record holds back only its own
// key, never the member's next fetch (see docs/fault-tolerance.md).
// Offsets are committed only for records that were handled or dead-lettered,
// so a crash redelivers, never skips (at-least-once).
type Consumer struct {
	cfg      ConsumerConfig
	client   *kgo.Client
	producer *kgo.Client
	log      *slog.Logger
	metrics  *Metrics
	pipe     *pipeline
	// produced is set when a dead letter was published since the last
	// offset commit.
	produced  atomic.Bool
	closeOnce sync.Once
}

// NewConsumer connects a consumer for cfg. Records of a new group are read
// from the start of each partition.
func NewConsumer(cfg ConsumerConfig, extra ...kgo.Opt) (*Consumer, error) {
	switch {
	case (cfg.Events == nil) == (cfg.Handler == nil):
		return nil, fmt.Errorf("kafka consumer %s: set exactly one of Events and Handler", cfg.Group)
	case cfg.Events != nil:
		cfg.Handler = eventRecords(cfg.Events)
	}
	if cfg.WrapHandler != nil {
		cfg.Handler = cfg.WrapHandler(cfg.Group, cfg.Handler)
	}
	if cfg.Retry.IsZero() {
		cfg.Retry = cfg.ConsumerRetry
	}
	if cfg.Retry.IsZero() {
		cfg.Retry = DefaultRetry()
	}
	cfg.Retry = cfg.Retry.normalised()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.KeyConcurrency == 0 {
		cfg.KeyConcurrency = 16
	}
	c := &Consumer{cfg: cfg, log: cfg.Logger.With("group", cfg.Group), metrics: cfg.metricsOf()}
	c.pipe = newPipeline(c)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(clientID(cfg.ClientID)),
		FreshMetadata(), // a subscribed topic created later is seen within MetadataMinAge
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics...),
		kgo.DisableAutoCommit(),
		// Polls and rebalance callbacks gate each other: no record of a
		// partition is fetched while its revocation settles.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.pipe.onRevoked),
		kgo.OnPartitionsLost(c.pipe.onLost),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200 * time.Millisecond),
		kgo.SessionTimeout(10 * time.Second),
		kgo.RebalanceTimeout(30 * time.Second),
	}
	for _, t := range cfg.Topics {
		if strings.HasPrefix(t, "^") {
			opts = append(opts, kgo.ConsumeRegex())
			break
		}
	}
	opts = append(opts, cfg.logOpts()...)
	opts = append(opts, cfg.Metrics.clientOpts(clientID(cfg.ClientID)+"/"+cfg.Group)...)
	opts = append(opts, cfg.Extra...)
	opts = append(opts, extra...)
	var err error
	if c.client, err = kgo.NewClient(opts...); err != nil {
		return nil, fmt.Errorf("kafka consumer %s: %w", cfg.Group, err)
	}
	if c.producer, err = NewProducer(cfg.Options); err != nil {
		c.client.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the consumer's Kafka clients; Run does so when it ends. A
// consumer built but never run (its process failed to start) must be
// closed, or its clients keep dialling the broker. Calling it again does
// nothing.
func (c *Consumer) Close() {
	c.closeOnce.Do(func() {
		c.client.Close()
		c.producer.Close()
	})
}

// Client exposes the group client, e.g. for lag queries.
func (c *Consumer) Client() *kgo.Client { return c.client }

// Run consumes until ctx ends, then commits what was handled and leaves the
// group. It returns nil on a clean stop.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.Close()
	c.pipe.run(ctx)
	return nil
}

// waitDurable waits, before an offset commit, until what the handlers and
// dead-lettering produced is durable on the broker.
func (c *Consumer) waitDurable(ctx context.Context) error {
	if c.cfg.Durability == nil || !(c.cfg.DurableCommits || c.produced.Load()) {
		return nil
	}
	c.produced.Store(false)
	if err := c.cfg.Durability.WaitDurable(ctx); err != nil {
		c.produced.Store(true)
		return err
	}
	return nil
}

// handle runs the handler with retries; it reports false only when ctx ended
// before the record was finished.
func (c *Consumer) handle(ctx context.Context, rec *kgo.Record) bool {
	start := time.Now()
	defer func() { c.metrics.handle.WithLabelValues(rec.Topic, c.cfg.Group).Observe(time.Since(start).Seconds()) }()
	rctx := logging.WithCorrelationID(ctx, Header(rec, events.HeaderCorrelationID))
	var err error
	attempt := 0
	for {
		attempt++
		err = c.safeHandle(events.WithDelivery(rctx, events.Delivery{Group: c.cfg.Group, Topic: rec.Topic, Partition: rec.Partition,
			Offset: rec.Offset, Timestamp: rec.Timestamp, Attempt: attempt}), rec)
		if err == nil {
			c.metrics.consumed.WithLabelValues(rec.Topic, c.cfg.Group, "ok").Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		permanent := IsPermanent(err)
		if !c.cfg.DisableDeadLetter && (permanent || attempt >= c.cfg.Retry.Attempts) {
			c.log.ErrorContext(rctx, "record failed; dead-lettering", "topic", rec.Topic, "partition", rec.Partition,
				"offset", rec.Offset, "attempts", attempt, "permanent", permanent, "err", err)
			return c.deadLetter(ctx, rec, err, attempt, permanent)
		}
		c.metrics.consumed.WithLabelValues(rec.Topic, c.cfg.Group, "retry").Inc()
		wait := c.cfg.Retry.Backoff(min(attempt, 30))
		c.log.WarnContext(rctx, "record failed; retrying", "topic", rec.Topic, "partition", rec.Partition,
			"offset", rec.Offset, "attempt", attempt, "wait", wait, "err", err)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// safeHandle turns a handler panic into a permanent error, so one poison
// record cannot crash the process in a loop.
func (c *Consumer) safeHandle(ctx context.Context, rec *kgo.Record) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = events.Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	return c.cfg.Handler(ctx, rec)
}

// eventRecords adapts an events.Handler to a record Handler: it decodes the
// record's CloudEvents envelope (a record that is none fails with
// events.ErrMalformed, which dead-letters it at once), gives the handler's
// context the event's correlation id when the record's headers carried
// none, and hands the event over.
func eventRecords(h events.Handler) Handler {
	return func(ctx context.Context, rec *kgo.Record) error {
		ev, err := events.Decode(rec.Value)
		if err != nil {
			return err
		}
		if logging.CorrelationID(ctx) == "" && ev.CorrelationID != "" {
			ctx = logging.WithCorrelationID(ctx, ev.CorrelationID)
		}
		return h(ctx, ev)
	}
}

// deadLetter publishes rec to its dead-letter topic, retrying until the
// broker takes it or ctx ends: a record is never skipped unrecorded. A
// missing dead-letter topic is created (brokers with auto-creation off would
// otherwise stall the partition forever).
func (c *Consumer) deadLetter(ctx context.Context, rec *kgo.Record, cause error, attempts int, permanent bool) bool {
	dl := DeadLetterRecord(rec, c.cfg.Group, cause, attempts)
	for try := 1; ; try++ {
		err := c.producer.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			c.produced.Store(true)
			c.metrics.deadLettered.WithLabelValues(rec.Topic, c.cfg.Group, fmt.Sprint(permanent)).Inc()
			c.metrics.consumed.WithLabelValues(rec.Topic, c.cfg.Group, "dead_letter").Inc()
			return true
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			if cerr := EnsureTopics(ctx, c.producer, -1, dl.Topic); cerr != nil {
				c.log.Warn("could not create dead-letter topic", "topic", dl.Topic, "err", cerr)
			}
		}
		c.log.Error("dead-letter publish failed; retrying", "topic", dl.Topic, "err", err)
		if !sleep(ctx, min(time.Duration(try)*time.Second, 10*time.Second)) {
			return false
		}
	}
}

// DeadLetterRecord builds the dead letter of rec: same key and value, the
// original headers, and Spring Kafka's kafka_dlt-* headers (partition as a
// 4-byte and offset and timestamp as 8-byte big-endian integers, as Spring
// writes them).
func DeadLetterRecord(rec *kgo.Record, group string, cause error, attempts int) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+9)
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, "kafka_dlt-") && h.Key != HeaderDLTAttempts {
			headers = append(headers, h)
		}
	}
	part := make([]byte, 4)
	binary.BigEndian.PutUint32(part, uint32(rec.Partition))
	off := make([]byte, 8)
	binary.BigEndian.PutUint64(off, uint64(rec.Offset))
	ts := make([]byte, 8)
	binary.BigEndian.PutUint64(ts, uint64(rec.Timestamp.UnixMilli()))
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLTOriginalTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderDLTOriginalPartition, Value: part},
		kgo.RecordHeader{Key: HeaderDLTOriginalOffset, Value: off},
		kgo.RecordHeader{Key: HeaderDLTOriginalTimestamp, Value: ts},
		kgo.RecordHeader{Key: HeaderDLTOriginalGroup, Value: []byte(group)},
		kgo.RecordHeader{Key: HeaderDLTExceptionFQCN, Value: []byte(ErrorClass(cause))},
		kgo.RecordHeader{Key: HeaderDLTExceptionMessage, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: HeaderDLTExceptionTrace, Value: []byte(errorTrace(cause))},
		kgo.RecordHeader{Key: HeaderDLTAttempts, Value: []byte(fmt.Sprint(attempts))},
	)
	topic := rec.Topic
	if !strings.HasSuffix(topic, events.DLQSuffix) {
		topic += events.DLQSuffix
	}
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: headers, Timestamp: time.Now()}
}

// ErrorClass names the kind of err the way kafka_dlt-exception-fqcn names a
// Java exception class: the Go type of the innermost error, qualified by
// package, with TrackOps' own classes for malformed and permanent errors.
func ErrorClass(err error) string {
	if errors.Is(err, events.ErrMalformed) {
		return "trackops.MalformedEventError"
	}
	root := err
	for {
		next := errors.Unwrap(root)
		if next == nil {
			break
		}
		root = next
	}
	t := reflect.TypeOf(root)
	name := t.String()
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.PkgPath() != "" {
		name = t.PkgPath() + "." + t.Name()
	}
	if name == "errors.errorString" || name == "*errors.errorString" {
		if IsPermanent(err) {
			return "trackops.PermanentError"
		}
		return "trackops.Error"
	}
	return name
}

// errorTrace lists the chain of wrapped errors, outermost first; Go errors
// carry no stack, and the chain is what explains a failure.
func errorTrace(err error) string {
	var b strings.Builder
	for e := err; e != nil; e = errors.Unwrap(e) {
		fmt.Fprintf(&b, "%T: %s\n", e, e.Error())
	}
	return b.String()
}

// Header returns the value of the record header key, or "".
func Header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
