// Package bench is TrackOps' measuring kit: a constant-rate load generator,
// benchmark scenarios that each measure TrackOps against a ceiling in the
// same run, and an invariant checker for the database after any run.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Operations of the load mix.
const (
	OpCreate = "create"
	OpRead   = "read"
	OpStatus = "status"
	OpCancel = "cancel"
)

// Mix weighs the operations of a load; weights need not add up to 100.
type Mix struct {
	Create, Read, Status, Cancel int
}

// DefaultMix is mostly creation and reads, with a few status changes and
// cancellations.
var DefaultMix = Mix{Create: 60, Read: 30, Status: 5, Cancel: 5}

// ParseMix reads "create=60,read=30,status=5,cancel=5"; omitted operations
// weigh 0.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: want op=weight with a whole weight >= 0", part)
		}
		switch strings.TrimSpace(name) {
		case OpCreate:
			m.Create = n
		case OpRead:
			m.Read = n
		case OpStatus:
			m.Status = n
		case OpCancel:
			m.Cancel = n
		default:
			return Mix{}, fmt.Errorf("mix %q: unknown operation %q (create, read, status, cancel)", part, name)
		}
	}
	if m.Create+m.Read+m.Status+m.Cancel == 0 {
		return Mix{}, fmt.Errorf("mix %q: every weight is 0", s)
	}
	return m, nil
}

// String renders the mix as ParseMix reads it.
func (m Mix) String() string {
	return fmt.Sprintf("create=%d,read=%d,status=%d,cancel=%d", m.Create, m.Read, m.Status, m.Cancel)
}

// LoadConfig describes one load run.
type LoadConfig struct {
	// Target is the base URL of the TrackOps API, e.g. http://127.0.0.1:8080.
	Target string
	// Token is sent as a Bearer token when not empty.
	Token string
	// Rate is requests per second, held constant whatever the latency
	// (open model: a slow server does not slow the arrivals down).
	Rate int
	// Duration is how long requests are sent.
	Duration time.Duration
	// SKUs is how many SKUs orders are spread over.
	SKUs int
	// Stock is the on_hand each SKU is set to before the run, when the
	// inventory API is there; 0 leaves stock alone.
	Stock int64
	Mix   Mix
	// Timeout bounds one request.
	Timeout time.Duration
	// Progress receives one line a second; nil prints nothing.
	Progress io.Writer
}

// LoadSummary is the outcome of a load run.
type LoadSummary struct {
	Target   string  `json:"target"`
	Mix      string  `json:"mix"`
	Rate     float64 `json:"rate_per_s"`
	Duration float64 `json:"duration_s"`
	Requests uint64  `json:"requests"`
	// Throughput is successful (2xx/3xx) responses per second.
	Throughput  float64               `json:"throughput_per_s"`
	Success     float64               `json:"success_ratio"`
	Latency     Latency               `json:"latency"`
	StatusCodes map[string]int        `json:"status_codes"`
	Errors      []string              `json:"errors,omitempty"`
	Ops         map[string]OpSummary  `json:"ops"`
	Inventory   string                `json:"inventory"`
	byOp        map[string]*opMetrics `json:"-"`
}

// OpSummary is one operation's share of a run.
type OpSummary struct {
	Requests    uint64         `json:"requests"`
	Latency     Latency        `json:"latency"`
	StatusCodes map[string]int `json:"status_codes"`
}

type opMetrics struct {
	rec   Recorder
	codes map[string]int
}

// Write prints the summary for people.
func (s LoadSummary) Write(w io.Writer) {
	fmt.Fprintf(w, "target      %s\nmix         %s\ninventory   %s\n", s.Target, s.Mix, s.Inventory)
	fmt.Fprintf(w, "requests    %d in %.1fs (%.1f/s sent)\n", s.Requests, s.Duration, s.Rate)
	fmt.Fprintf(w, "throughput  %.1f successful/s (success %.2f%%)\n", s.Throughput, 100*s.Success)
	fmt.Fprintf(w, "latency     p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms\n", s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max)
	fmt.Fprintf(w, "status      %s\n", formatCodes(s.StatusCodes))
	ops := make([]string, 0, len(s.Ops))
	for op := range s.Ops {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	for _, op := range ops {
		o := s.Ops[op]
		fmt.Fprintf(w, "  %-8s %6d  p50 %.2fms  p99 %.2fms  %s\n", op, o.Requests, o.Latency.P50, o.Latency.P99, formatCodes(o.StatusCodes))
	}
	for _, e := range s.Errors {
		fmt.Fprintf(w, "error       %s\n", e)
	}
}

func formatCodes(codes map[string]int) string {
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s:%d", k, codes[k]))
	}
	return strings.Join(parts, " ")
}

// SKUName is the name of the i-th SKU the load generator uses.
func SKUName(i int) string { return fmt.Sprintf("BENCH-%04d", i) }

// RunLoad sends cfg.Rate requests a second for cfg.Duration and summarises
// the responses. Read, status and cancel requests pick among the orders
// this run created; until there are some, every request creates one.
func RunLoad(ctx context.Context, cfg LoadConfig) (LoadSummary, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return LoadSummary{}, fmt.Errorf("rate and duration must be positive")
	}
	if _, err := url.Parse(cfg.Target); err != nil || !strings.HasPrefix(cfg.Target, "http") {
		return LoadSummary{}, fmt.Errorf("target %q: want a base URL such as http://127.0.0.1:8080", cfg.Target)
	}
	cfg.Target = strings.TrimRight(cfg.Target, "/")
	if cfg.SKUs <= 0 {
		cfg.SKUs = 100
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Mix == (Mix{}) {
		cfg.Mix = DefaultMix
	}
	api := &apiClient{base: cfg.Target, token: cfg.Token, http: &http.Client{Timeout: cfg.Timeout}}
	sum := LoadSummary{Target: cfg.Target, Mix: cfg.Mix.String(), Inventory: "not seeded (--stock 0)",
		byOp: map[string]*opMetrics{}}
	if cfg.Stock > 0 {
		sum.Inventory = api.seedInventory(ctx, cfg.SKUs, cfg.Stock)
	}

	st := &loadState{cfg: cfg, orders: map[string]string{}}
	attacker := vegeta.NewAttacker(vegeta.Timeout(cfg.Timeout), vegeta.KeepAlive(true), vegeta.Workers(16))
	results := attacker.Attack(st.targeter(), vegeta.Rate{Freq: cfg.Rate, Per: time.Second}, cfg.Duration, "trackops")

	var all vegeta.Metrics
	var allRec Recorder
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	var window []time.Duration
	var windowOK, windowN int
	windowCodes := map[string]int{}
	stopped := false
	for {
		select {
		case <-ctx.Done():
			if !stopped {
				attacker.Stop()
				stopped = true
			}
		case r, ok := <-results:
			if !ok {
				all.Close()
				sum.fill(&all, &allRec)
				return sum, nil
			}
			all.Add(r)
			allRec.Add(r.Latency)
			op := st.record(r)
			m := sum.byOp[op]
			if m == nil {
				m = &opMetrics{codes: map[string]int{}}
				sum.byOp[op] = m
			}
			m.rec.Add(r.Latency)
			m.codes[codeName(r)]++
			window = append(window, r.Latency)
			windowN++
			if r.Code >= 200 && r.Code < 400 {
				windowOK++
			} else {
				windowCodes[codeName(r)]++
			}
			r.Body = nil
		case <-tick.C:
			if cfg.Progress != nil {
				l := summarize(window)
				fmt.Fprintf(cfg.Progress, "loadgen %5.0fs  done %6d/s  ok %6d/s  p50 %7.2fms  p99 %7.2fms  errors %s\n",
					time.Since(start).Seconds(), windowN, windowOK, l.P50, l.P99, formatCodes(windowCodes))
			}
			window, windowN, windowOK = window[:0], 0, 0
			windowCodes = map[string]int{}
		}
	}
}

func codeName(r *vegeta.Result) string {
	if r.Code == 0 {
		return "transport-error"
	}
	return strconv.Itoa(int(r.Code))
}

func (s *LoadSummary) fill(all *vegeta.Metrics, rec *Recorder) {
	s.Rate = round3(all.Rate)
	s.Duration = round3(all.Duration.Seconds())
	s.Requests = all.Requests
	s.Throughput = round3(all.Throughput)
	s.Success = round3(all.Success)
	s.Latency = rec.Summary()
	s.StatusCodes = map[string]int{}
	for k, v := range all.StatusCodes {
		if k == "0" {
			k = "transport-error"
		}
		s.StatusCodes[k] = v
	}
	if len(all.Errors) > 10 {
		all.Errors = all.Errors[:10]
	}
	s.Errors = all.Errors
	s.Ops = map[string]OpSummary{}
	for op, m := range s.byOp {
		s.Ops[op] = OpSummary{Requests: uint64(m.rec.Count()), Latency: m.rec.Summary(), StatusCodes: m.codes}
	}
}

// loadState is what the load knows about the orders it created: their ids
// and last seen statuses, to pick targets for reads and changes.
type loadState struct {
	cfg    LoadConfig
	mu     sync.Mutex
	ids    []string
	orders map[string]string // id -> last known status
	seq    uint64
}

// nextStatus is the move a client makes next. PENDING has none: only the
// saga confirms an order, once inventory reserved it (a client asking gets
// 409), so a status change aimed at a PENDING order reads it instead, which
// also learns the saga's decision.
var nextStatus = map[string]string{
	"CONFIRMED": "PROCESSING", "PROCESSING": "SHIPPED", "SHIPPED": "DELIVERED",
}

func (s *loadState) targeter() vegeta.Targeter {
	total := s.cfg.Mix.Create + s.cfg.Mix.Read + s.cfg.Mix.Status + s.cfg.Mix.Cancel
	header := http.Header{"Content-Type": {"application/json"}}
	if s.cfg.Token != "" {
		header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	return func(t *vegeta.Target) error {
		t.Header = header
		n := rand.IntN(total)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.seq++
		switch {
		case n < s.cfg.Mix.Create || len(s.ids) == 0:
			t.Method, t.URL, t.Body = http.MethodPost, s.cfg.Target+"/api/v1/orders", s.orderBody()
		case n < s.cfg.Mix.Create+s.cfg.Mix.Read:
			t.Method, t.URL, t.Body = http.MethodGet, s.cfg.Target+"/api/v1/orders/"+s.ids[rand.IntN(len(s.ids))], nil
		case n < s.cfg.Mix.Create+s.cfg.Mix.Read+s.cfg.Mix.Status:
			id := s.ids[rand.IntN(len(s.ids))]
			next, ok := nextStatus[s.orders[id]]
			if !ok { // PENDING (the saga's to decide) or finished: read it instead
				t.Method, t.URL, t.Body = http.MethodGet, s.cfg.Target+"/api/v1/orders/"+id, nil
				return nil
			}
			t.Method, t.URL = http.MethodPatch, s.cfg.Target+"/api/v1/orders/"+id+"/status"
			t.Body = []byte(`{"status":"` + next + `","reason":"loadgen"}`)
		default:
			id := s.ids[rand.IntN(len(s.ids))]
			t.Method, t.URL = http.MethodPost, s.cfg.Target+"/api/v1/orders/"+id+"/cancel"
			t.Body = []byte(`{"reason":"loadgen"}`)
		}
		return nil
	}
}

func (s *loadState) orderBody() []byte {
	lines := 1 + rand.IntN(3)
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"customer_id":"bench-cust-%d","items":[`, s.seq%100)
	used := map[int]bool{}
	for i := 0; i < lines; i++ {
		sku := rand.IntN(s.cfg.SKUs)
		if used[sku] {
			continue
		}
		used[sku] = true
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"%s","quantity":%d,"unit_price":"%d.99"}`, SKUName(sku), 1+rand.IntN(2), 5+rand.IntN(20))
	}
	b.WriteString(`],"shipping_address":{"line1":"1 Bench Street","city":"Loadville","country":"US"}}`)
	return b.Bytes()
}

// record learns from a response and returns the operation it answered.
func (s *loadState) record(r *vegeta.Result) string {
	path := r.URL
	if u, err := url.Parse(r.URL); err == nil {
		path = u.Path
	}
	op := OpRead
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/orders"):
		op = OpCreate
	case r.Method == http.MethodPatch:
		op = OpStatus
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/cancel"):
		op = OpCancel
	}
	if r.Code < 200 || r.Code >= 300 || len(r.Body) == 0 {
		return op
	}
	var o struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(r.Body, &o) != nil || o.ID == "" {
		return op
	}
	s.mu.Lock()
	if _, known := s.orders[o.ID]; !known {
		s.ids = append(s.ids, o.ID)
	}
	s.orders[o.ID] = o.Status
	s.mu.Unlock()
	return op
}

// apiClient makes the few one-off calls around a run.
type apiClient struct {
	base, token string
	http        *http.Client
}

func (c *apiClient) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// seedInventory sets every SKU's stock through the inventory API and says
// what happened; a missing API is reported, not an error.
func (c *apiClient) seedInventory(ctx context.Context, skus int, stock int64) string {
	for i := 0; i < skus; i++ {
		body := fmt.Sprintf(`{"name":"Bench item %d","on_hand":%d}`, i, stock)
		code, resp, err := c.do(ctx, http.MethodPut, "/api/v1/inventory/"+SKUName(i), []byte(body))
		switch {
		case err != nil:
			return "unavailable: " + err.Error()
		case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
			return fmt.Sprintf("unavailable: PUT /api/v1/inventory/{sku} answered %d (no inventory API in this build)", code)
		case code >= 300:
			return fmt.Sprintf("unavailable: PUT /api/v1/inventory/%s answered %d: %s", SKUName(i), code, truncate(string(resp), 200))
		}
	}
	return fmt.Sprintf("seeded %d SKUs with on_hand %d", skus, stock)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
