package ops

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/trackops/trackops/internal/events"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
)

// Sample is the platform's vital signs at one moment, as the console's
// overview charts them.
type Sample struct {
	At time.Time `json:"at"`
	// OrdersPerMinute counts orders created in the minute before At.
	OrdersPerMinute float64 `json:"orders_per_minute"`
	// EventsPerSecond is the rate application events were appended to
	// their topics since the previous sample (both strategies).
	EventsPerSecond float64 `json:"events_per_second"`
	// ConsumerLag is the total lag of every consumer group.
	ConsumerLag int64 `json:"consumer_lag"`
	// DeadLettersNew counts dead letters nobody replayed or discarded yet;
	// DeadLettersPerMinute is the rate new ones arrived since the previous
	// sample.
	DeadLettersNew       int64   `json:"dead_letters_new"`
	DeadLettersPerMinute float64 `json:"dead_letters_per_minute"`
	// CDCLagBytes is the largest WAL distance from the server's position to
	// what a logical slot of this database confirmed; absent without slots.
	CDCLagBytes *int64 `json:"cdc_lag_bytes,omitempty"`
	// OutboxBacklog counts unpublished rows; OutboxOldestAgeSeconds is the
	// age of the oldest (0 when none).
	OutboxBacklog          int64   `json:"outbox_backlog"`
	OutboxOldestAgeSeconds float64 `json:"outbox_oldest_age_seconds"`
	// Errors name the sources that did not answer for this sample.
	Errors []string `json:"errors,omitempty"`
}

// Pulse samples the platform's rates on a fixed interval and keeps the last
// few minutes, so a console that opens the overview sees trends at once.
// Each sample costs a handful of indexed queries and two Kafka admin
// requests; the counters come from the database and the cluster, so every
// process's pulse agrees whatever roles it runs.
type Pulse struct {
	db       postgres.Querier
	adm      *kadm.Client
	interval time.Duration
	keep     int
	log      *slog.Logger

	mu      sync.Mutex
	samples []Sample
	prev    pulseCounters
}

type pulseCounters struct {
	at        time.Time
	events    int64
	lastDLQID int64
	ok        bool
}

// PulseOptions configure a Pulse.
type PulseOptions struct {
	// Interval between samples (default 5 s).
	Interval time.Duration
	// Window is how much history is kept (default 15 min).
	Window time.Duration
	Logger *slog.Logger
}

// NewPulse returns a Pulse reading db and the cluster behind client.
func NewPulse(db postgres.Querier, client *kgo.Client, o PulseOptions) *Pulse {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Window <= 0 {
		o.Window = 15 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Pulse{db: db, adm: kadm.NewClient(client), interval: o.Interval, keep: int(o.Window / o.Interval), log: o.Logger}
}

// Run samples until ctx ends.
func (p *Pulse) Run(ctx context.Context) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample takes one sample now, keeps it and returns it.
func (p *Pulse) Sample(ctx context.Context) Sample {
	ctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	now := time.Now().UTC()
	s := Sample{At: now}
	var cur pulseCounters
	cur.at = now

	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) FROM orders WHERE created_at > now() - interval '1 minute'`)
	b.Queue(`SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
		FROM outbox_pending`)
	b.Queue(`SELECT (SELECT count(*) FROM dlq_messages WHERE status = 'new'), (SELECT coalesce(max(id), 0) FROM dlq_messages)`)
	b.Queue(`SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn))::bigint FROM pg_replication_slots
		WHERE database = current_database() AND slot_type = 'logical'`)
	br := p.db.SendBatch(ctx, b)
	var orders int64
	dbErr := br.QueryRow().Scan(&orders)
	if dbErr == nil {
		dbErr = br.QueryRow().Scan(&s.OutboxBacklog, &s.OutboxOldestAgeSeconds)
	}
	if dbErr == nil {
		dbErr = br.QueryRow().Scan(&s.DeadLettersNew, &cur.lastDLQID)
	}
	if dbErr == nil {
		dbErr = br.QueryRow().Scan(&s.CDCLagBytes)
	}
	if err := br.Close(); dbErr == nil {
		dbErr = err
	}
	if dbErr != nil {
		s.Errors = append(s.Errors, "database: "+dbErr.Error())
	}
	s.OrdersPerMinute = float64(orders)

	kafkaOK := true
	if ends, err := p.adm.ListEndOffsets(ctx, events.AllTypes...); err == nil {
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				cur.events += o.Offset
			}
		})
	} else {
		kafkaOK = false
		s.Errors = append(s.Errors, "kafka: "+err.Error())
	}
	if groups, err := p.adm.ListGroups(ctx); err == nil {
		if lags, err := p.adm.Lag(ctx, groups.Groups()...); err == nil {
			for _, gl := range lags {
				for _, ps := range gl.Lag {
					for _, l := range ps {
						if l.Lag > 0 {
							s.ConsumerLag += l.Lag
						}
					}
				}
			}
		}
	}
	cur.ok = dbErr == nil && kafkaOK

	if len(s.Errors) > 0 {
		p.log.Debug("overview sample incomplete", "errors", s.Errors)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prev.ok && cur.ok {
		secs := now.Sub(p.prev.at).Seconds()
		if secs > 0 {
			s.EventsPerSecond = max(0, float64(cur.events-p.prev.events)/secs)
			s.DeadLettersPerMinute = max(0, float64(cur.lastDLQID-p.prev.lastDLQID)*60/secs)
		}
	}
	if cur.ok {
		p.prev = cur
	}
	p.samples = append(p.samples, s)
	if len(p.samples) > p.keep {
		p.samples = append(p.samples[:0:0], p.samples[len(p.samples)-p.keep:]...)
	}
	return s
}

// Samples returns the kept samples, oldest first.
func (p *Pulse) Samples() []Sample {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Sample(nil), p.samples...)
}

// Routes is GET /api/v1/ops/overview, for every signed-in role.
func (p *Pulse) Routes() []httpapi.Route {
	return []httpapi.Route{{Method: http.MethodGet, Pattern: "/api/v1/ops/overview", Role: httpapi.RoleViewer, Handler: p.serve}}
}

func (p *Pulse) serve(w http.ResponseWriter, r *http.Request) {
	samples := p.Samples()
	if len(samples) == 0 {
		samples = []Sample{p.Sample(r.Context())}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"interval_seconds": p.interval.Seconds(), "samples": samples})
}
