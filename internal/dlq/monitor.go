package dlq

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/kafka"
)

// MonitorGroup is the DLQ monitor's consumer group.
const MonitorGroup = "trackops-dlq-monitor"

// Metrics are the DLQ's series: dead letters recorded, replays and alerts.
// One serves the monitor, the alerter and the replayer of a process.
type Metrics struct {
	messages *prometheus.CounterVec
	replays  *prometheus.CounterVec
	alerts   *prometheus.CounterVec
}

// NewMetrics creates the DLQ metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		messages: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_dlq_messages_total",
			Help: "Dead letters recorded by the DLQ monitor, by dead-letter topic and error class (kafka_dlt-exception-fqcn).",
		}, []string{"topic", "error_class"}),
		replays: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_dlq_replays_total",
			Help: "Dead-letter replay outcomes, by original topic and outcome (replayed, blocked).",
		}, []string{"topic", "outcome"}),
		alerts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "trackops_dlq_alerts_total",
			Help: "DLQ webhook alerts, by outcome (sent, failed, suppressed by the rate limit, dropped on a full queue).",
		}, []string{"outcome"}),
	}
	return m
}

// MonitorConfig describes a Monitor.
type MonitorConfig struct {
	// Kafka connects the monitor's consumer.
	Kafka kafka.Options
	// Group is the consumer group; default MonitorGroup.
	Group string
	// Alerter is told of each new dead letter; nil logs only.
	Alerter *Alerter
	// Logger receives the monitor's logs.
	Logger *slog.Logger
	// MetadataRefresh is how soon a newly created .dlq topic is picked up
	// (default 30 s).
	MetadataRefresh time.Duration
	// Metrics count the dead letters recorded; nil counts without exporting.
	Metrics *Metrics
}

// Monitor consumes every dead-letter topic and records each dead letter.
type Monitor struct {
	store    *Store
	alerter  *Alerter
	log      *slog.Logger
	metrics  *Metrics
	consumer *kafka.Consumer
}

// NewMonitor builds the monitor's consumer: its own group, every topic
// matching TopicPattern, dead-lettering off (a record it cannot store — the
// database is down — is retried until it can, never skipped).
func NewMonitor(store *Store, cfg MonitorConfig) (*Monitor, error) {
	if cfg.Group == "" {
		cfg.Group = MonitorGroup
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MetadataRefresh <= 0 {
		cfg.MetadataRefresh = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	m := &Monitor{store: store, alerter: cfg.Alerter, log: cfg.Logger, metrics: cfg.Metrics}
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options:           cfg.Kafka,
		Group:             cfg.Group,
		Topics:            []string{TopicPattern},
		Handler:           m.Handle,
		Logger:            cfg.Logger,
		DisableDeadLetter: true,
		Retry:             kafka.RetryPolicy{Attempts: 1, Initial: 500 * time.Millisecond, Multiplier: 2, Max: 30 * time.Second},
	}, kgo.MetadataMaxAge(cfg.MetadataRefresh), kgo.MetadataMinAge(min(cfg.MetadataRefresh, time.Second)))
	if err != nil {
		return nil, fmt.Errorf("dlq monitor: %w", err)
	}
	m.consumer = c
	return m, nil
}

// Close releases the monitor's Kafka clients, for a monitor that never ran
// (Run releases them when it ends).
func (m *Monitor) Close() { m.consumer.Close() }

// Run consumes until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	if m.alerter != nil {
		go m.alerter.Run(ctx)
	}
	return m.consumer.Run(ctx)
}

// Handle records one dead letter; a redelivered record is recorded once,
// counted once and alerted once.
func (m *Monitor) Handle(ctx context.Context, rec *kgo.Record) error {
	msg := FromRecord(rec)
	id, inserted, err := m.store.Insert(ctx, msg)
	if err != nil {
		return err
	}
	if !inserted {
		return nil
	}
	msg.ID = id
	m.metrics.messages.WithLabelValues(msg.Topic, msg.ExceptionClass).Inc()
	m.log.WarnContext(ctx, "dead letter recorded", "dlq_id", id, "topic", msg.Topic, "original_topic", msg.OriginalTopic,
		"original_partition", deref(msg.OriginalPartition), "original_offset", deref(msg.OriginalOffset),
		"consumer_group", msg.ConsumerGroup, "error_class", msg.ExceptionClass, "error", msg.ExceptionMessage,
		"fingerprint", msg.Fingerprint, "replay_count", msg.ReplayCount)
	if m.alerter != nil {
		m.alerter.Notify(msg)
	}
	return nil
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
