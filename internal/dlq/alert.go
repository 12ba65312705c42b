package dlq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// AlertConfig describes an Alerter.
type AlertConfig struct {
	// WebhookURL receives a JSON POST per alert (TRACKOPS_DLQ_ALERT_WEBHOOK);
	// empty means alerts are only logged.
	WebhookURL string
	// Interval is the least time between two webhook alerts of one
	// fingerprint (default 5 min); dead letters in between are counted and
	// reported with the next alert.
	Interval time.Duration
	// Client sends the webhook (default: a client with a 5 s timeout).
	Client *http.Client
	// Logger receives the alert log lines.
	Logger *slog.Logger
	// Metrics count the alerts by outcome; nil counts without exporting.
	Metrics *Metrics
}

// Alert is the webhook's JSON body. Text makes it readable as a Slack or
// Mattermost incoming-webhook message as it is.
type Alert struct {
	Text           string    `json:"text"`
	DLQID          int64     `json:"dlq_id"`
	Topic          string    `json:"topic"`
	OriginalTopic  string    `json:"original_topic"`
	ConsumerGroup  string    `json:"consumer_group"`
	ErrorClass     string    `json:"error_class"`
	ErrorMessage   string    `json:"error_message"`
	Fingerprint    string    `json:"fingerprint"`
	ErrorPattern   string    `json:"error_pattern"`
	Suppressed     int       `json:"suppressed_since_last_alert"`
	ReceivedAt     time.Time `json:"received_at"`
	ReplayCount    int       `json:"replay_count"`
	FirstOfPattern bool      `json:"first_of_pattern"`
}

// Alerter raises an alert for dead letters: a log line for each, and a
// webhook call at most once per Interval per fingerprint, so a burst of one
// failure is one page, not thousands. Webhook calls are sent in the
// background from a bounded queue; a slow webhook never holds up the monitor.
type Alerter struct {
	cfg   AlertConfig
	queue chan Alert

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// NewAlerter returns an alerter for cfg.
func NewAlerter(cfg AlertConfig) *Alerter {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Alerter{cfg: cfg, queue: make(chan Alert, 64), last: map[string]time.Time{}, suppressed: map[string]int{}}
}

// Notify alerts on m, subject to the rate limit.
func (a *Alerter) Notify(m Message) {
	now := time.Now()
	a.mu.Lock()
	last, seen := a.last[m.Fingerprint]
	if seen && now.Sub(last) < a.cfg.Interval {
		a.suppressed[m.Fingerprint]++
		a.mu.Unlock()
		a.cfg.Metrics.alerts.WithLabelValues("suppressed").Inc()
		return
	}
	a.last[m.Fingerprint] = now
	suppressed := a.suppressed[m.Fingerprint]
	delete(a.suppressed, m.Fingerprint)
	a.mu.Unlock()

	alert := Alert{
		DLQID: m.ID, Topic: m.Topic, OriginalTopic: m.OriginalTopic, ConsumerGroup: m.ConsumerGroup,
		ErrorClass: m.ExceptionClass, ErrorMessage: m.ExceptionMessage, Fingerprint: m.Fingerprint,
		ErrorPattern: m.ErrorPattern, Suppressed: suppressed, ReceivedAt: now.UTC(), ReplayCount: m.ReplayCount,
		FirstOfPattern: !seen,
	}
	alert.Text = fmt.Sprintf("TrackOps dead letter on %s (from %s, group %s): %s: %s", m.Topic, m.OriginalTopic,
		m.ConsumerGroup, m.ExceptionClass, truncate(m.ExceptionMessage, 300))
	if suppressed > 0 {
		alert.Text += fmt.Sprintf(" (+%d more of this kind since the last alert)", suppressed)
	}
	a.cfg.Logger.Error("DLQ alert", "dlq_id", m.ID, "topic", m.Topic, "original_topic", m.OriginalTopic,
		"error_class", m.ExceptionClass, "fingerprint", m.Fingerprint, "suppressed_since_last_alert", suppressed)
	if a.cfg.WebhookURL == "" {
		return
	}
	select {
	case a.queue <- alert:
	default:
		a.cfg.Metrics.alerts.WithLabelValues("dropped").Inc()
		a.cfg.Logger.Warn("DLQ alert queue full; webhook alert dropped", "fingerprint", m.Fingerprint)
	}
}

// Run sends queued webhook alerts until ctx ends.
func (a *Alerter) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case alert := <-a.queue:
			if err := a.send(ctx, alert); err != nil {
				a.cfg.Metrics.alerts.WithLabelValues("failed").Inc()
				a.cfg.Logger.Warn("DLQ webhook alert failed", "err", err, "fingerprint", alert.Fingerprint)
				continue
			}
			a.cfg.Metrics.alerts.WithLabelValues("sent").Inc()
		}
	}
}

func (a *Alerter) send(ctx context.Context, alert Alert) error {
	body, err := json.Marshal(alert)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
