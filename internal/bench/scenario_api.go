package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/trackops/trackops/internal/commerce"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/testfix"
)

// rig is what a scenario runs against: its own database, Redis and TrackOps
// process.
type rig struct {
	db    *Database
	redis *testfix.Redis
	proc  *Process
	token string
	api   *apiClient
	http  *http.Client
	notes []string
}

// setUp creates the database (migrated), starts a private Redis and, unless
// noProcess, the TrackOps process with extra settings and arguments.
func setUp(ctx context.Context, cfg Config, name string, env []string, args ...string) (*rig, error) {
	r := &rig{}
	var err error
	if r.db, err = CreateDatabase(ctx, cfg.DatabaseURL, "trackops_bench_"+strings.ReplaceAll(name, "-", "_")); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	if r.redis, err = StartRedis(); err != nil {
		r.tearDown()
		return nil, err
	}
	if err := r.start(ctx, cfg, env, args...); err != nil {
		r.tearDown()
		return nil, err
	}
	return r, nil
}

func (r *rig) start(ctx context.Context, cfg Config, env []string, args ...string) error {
	var err error
	r.proc, err = StartProcess(ctx, ProcessConfig{Binary: cfg.Binary, DatabaseURL: r.db.URL, RedisURL: r.redis.URL(), Env: env, Args: args})
	if err != nil {
		return err
	}
	key, reason, err := CreateAPIKey(ctx, cfg.Binary, r.proc.Env)
	if err != nil {
		return err
	}
	if reason != "" {
		r.notes = append(r.notes, reason)
	}
	r.token = key
	r.http = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxIdleConns: 256}}
	r.api = &apiClient{base: r.proc.HTTP, token: key, http: r.http}
	return nil
}

// peakRSS stops nothing; it reads the process's VmHWM now.
func (r *rig) peakRSS() int64 {
	if r.proc == nil {
		return 0
	}
	return r.proc.PeakRSS()
}

func (r *rig) tearDown() {
	if r.proc != nil {
		r.proc.Stop()
	}
	if r.redis != nil {
		r.redis.Kill()
		os.RemoveAll(r.redis.Dir)
	}
	if r.db != nil {
		r.db.Drop(context.Background())
	}
}

func failed(r Result, err error) Result {
	r.Status = StatusError
	r.Error = err.Error()
	return r
}

// orderRequest is a one- to three-line order over skus SKUs, as the API
// takes it and as the domain places it.
func orderRequest(i int64, skus int) ([]byte, order.NewOrder) {
	lines := 1 + int(i%3)
	n := order.NewOrder{CustomerID: fmt.Sprintf("bench-cust-%d", i%100),
		ShippingAddress: json.RawMessage(`{"line1":"1 Bench Street","city":"Loadville","country":"US"}`)}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"customer_id":%q,"items":[`, n.CustomerID)
	for l := 0; l < lines; l++ {
		sku := SKUName(int((i + int64(l)*7) % int64(skus)))
		if l > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":%q,"quantity":%d,"unit_price":"19.99"}`, sku, 1+l)
		n.Items = append(n.Items, order.NewItem{SKU: sku, Quantity: 1 + l, UnitPrice: commerce.Money(1999)})
	}
	fmt.Fprintf(&b, `],"shipping_address":%s}`, n.ShippingAddress)
	return b.Bytes(), n
}

func (r *rig) createOrder(ctx context.Context, body []byte) (string, []byte, error) {
	code, resp, err := r.api.do(ctx, http.MethodPost, "/api/v1/orders", body)
	if err != nil {
		return "", nil, err
	}
	if code != http.StatusCreated {
		return "", nil, fmt.Errorf("POST /api/v1/orders: %d %s", code, truncate(string(resp), 200))
	}
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &o); err != nil {
		return "", nil, err
	}
	return o.ID, resp, nil
}

// runAPICreate: orders created over HTTP vs the same rows written with pgx,
// one transaction per order, at the same concurrency.
func runAPICreate(ctx context.Context, cfg Config) Result {
	res := Result{Description: "orders created over HTTP (POST /api/v1/orders, the API alone: --roles orders) vs the same rows (order, items, history, outbox event) inserted with pgx, one transaction per order; closed loop at the same concurrency"}
	// The API alone: every order created would otherwise start a saga
	// (reservation, confirmation, cache refresh) in the same process, whose
	// cost, several times the create's, would be measured as the API's.
	r, err := setUp(ctx, cfg, "api-create", nil, "--roles", "orders")
	if err != nil {
		return failed(res, err)
	}
	defer r.tearDown()
	const skus = 100
	cfg.logf("api-create", "warm-up %s, then HTTP and pgx in 4 alternating rounds, %s each side, at %d workers", warmUp, cfg.Phase, cfg.Concurrency)
	create := func(ctx context.Context, _ int, i int64) error {
		body, _ := orderRequest(i, skus)
		_, _, err := r.createOrder(ctx, body)
		return err
	}
	closedLoop(ctx, cfg.Concurrency, warmUp, "warm-up", create)
	svcNow := func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
	insert := func(ctx context.Context, _ int, i int64) error {
		_, n := orderRequest(i, skus)
		o, err := order.Place(n, svcNow())
		if err != nil {
			return err
		}
		ev, err := order.CreatedEvent(ctx, o)
		if err != nil {
			return err
		}
		return postgres.WithTx(ctx, r.db.Pool, func(tx pgx.Tx) error {
			return (order.Store{}).Insert(ctx, tx, o, "bench", ev)
		})
	}
	m := interleaved(ctx, cfg.Concurrency, cfg.Phase, 4,
		side{"POST /api/v1/orders over HTTP/1.1 keep-alive", create},
		side{"pgx: INSERT order, items, history and ORDER_CREATED outbox row in one transaction", insert})
	httpSide, pgxSide := m[0], m[1]
	cfg.logf("api-create", "HTTP: %.0f orders/s, pgx: %.0f orders/s", httpSide.Throughput, pgxSide.Throughput)
	res.Comparisons = append(res.Comparisons, throughputComparison(fmt.Sprintf("create throughput at %d workers", cfg.Concurrency), httpSide, pgxSide))
	res.PeakRSSBytes = r.peakRSS()
	res.Notes = append(r.notes, "the process runs the API alone (--roles orders), as an API tier does when the platform scales out: "+
		"no relay, consumer or saga shares its 2 cores with the measurement (the relay and saga scenarios measure those); "+
		"the outbox rows of both sides stay unpublished")
	return res
}

// runAPIRead: cached order reads over HTTP vs raw Redis GETs of the same
// keys, and vs net/http alone answering the same bodies.
func runAPIRead(ctx context.Context, cfg Config) Result {
	res := Result{Description: "order reads over HTTP (GET /api/v1/orders/{id}, served from the cache: the process's near cache in front of Redis) vs raw Redis GETs of the same order:{id} keys (db 2), and vs net/http alone answering the same bodies from memory (the HTTP floor); closed loop at the same concurrency, each HTTP worker on its own keep-alive connection"}
	r, err := setUp(ctx, cfg, "api-read", nil)
	if err != nil {
		return failed(res, err)
	}
	defer r.tearDown()
	const orders = 1000
	cfg.logf("api-read", "creating %d orders", orders)
	ids := make([]string, orders)
	bodies := make([][]byte, orders)
	if _, sample := forEach(ctx, cfg.Concurrency, orders, func(ctx context.Context, i int) error {
		body, _ := orderRequest(int64(i), 100)
		id, resp, err := r.createOrder(ctx, body)
		ids[i], bodies[i] = id, resp
		return err
	}); sample != "" {
		return failed(res, fmt.Errorf("creating orders: %s", sample))
	}
	// Read each order once: that fills the cache if there is one, and gives
	// the HTTP floor the bodies the API answers with.
	var mu sync.Mutex
	served := make(map[string][]byte, len(ids))
	forEach(ctx, cfg.Concurrency, len(ids), func(ctx context.Context, i int) error {
		_, body, err := r.api.do(ctx, http.MethodGet, "/api/v1/orders/"+ids[i], nil)
		mu.Lock()
		served[ids[i]] = body
		mu.Unlock()
		return err
	})
	floor, err := startHTTPFloor(served)
	if err != nil {
		return failed(res, err)
	}
	defer floor.close()

	opts, err := redis.ParseURL(r.redis.URL())
	if err != nil {
		return failed(res, err)
	}
	opts.DB = 2 // the orders store
	opts.PoolSize = cfg.Concurrency
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	cached, err := rdb.Exists(ctx, "order:"+ids[0]).Result()
	if err != nil {
		return failed(res, fmt.Errorf("redis: %w", err))
	}
	cacheMissing := ""
	if cached == 0 {
		cacheMissing = "no order:{id} key in Redis db 2 after reading the order: the order cache is not in this build"
		// Put the API's own bodies there so the ceiling still reads values of the real size.
		pipe := rdb.Pipeline()
		for i, id := range ids {
			pipe.Set(ctx, "order:"+id, bodies[i], time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return failed(res, fmt.Errorf("redis: %w", err))
		}
	}

	client, err := newKeepAliveClient(r.proc.HTTP, r.token, cfg.Concurrency, 10*time.Second)
	if err != nil {
		return failed(res, err)
	}
	defer client.close()
	floorClient, err := newKeepAliveClient(floor.base, r.token, cfg.Concurrency, 10*time.Second)
	if err != nil {
		return failed(res, err)
	}
	defer floorClient.close()
	read := func(c *keepAliveClient) loopFunc {
		return func(ctx context.Context, worker int, _ int64) error {
			id := ids[rand.IntN(len(ids))]
			code, err := c.get(ctx, worker, "/api/v1/orders/"+id)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("GET /api/v1/orders/%s: %d", id, code)
			}
			return err
		}
	}
	cfg.logf("api-read", "HTTP, Redis and the bare net/http floor in 4 alternating rounds, %s each, at %d workers over %d orders", cfg.Phase, cfg.Concurrency, len(ids))
	m := interleaved(ctx, cfg.Concurrency, cfg.Phase, 4,
		side{"GET /api/v1/orders/{id} over HTTP/1.1 keep-alive", read(client)},
		side{"go-redis GET order:{id} on the same Redis", func(ctx context.Context, _ int, _ int64) error {
			return rdb.Get(ctx, "order:"+ids[rand.IntN(len(ids))]).Err()
		}},
		side{"net/http alone (in the harness's process) answering GET /api/v1/orders/{id} with the API's bodies from a map", read(floorClient)})
	httpSide, redisSide, floorSide := m[0], m[1], m[2]
	cfg.logf("api-read", "HTTP: %.0f reads/s, Redis: %.0f GETs/s, net/http alone: %.0f reads/s", httpSide.Throughput, redisSide.Throughput, floorSide.Throughput)
	if cacheMissing != "" {
		httpSide.What += " (uncached: served from PostgreSQL)"
		httpSide.Unavailable = "unavailable: " + cacheMissing
		res.Status, res.Unavailable = StatusUnavailable, cacheMissing
	}
	res.Comparisons = append(res.Comparisons,
		throughputComparison(fmt.Sprintf("read throughput at %d workers", cfg.Concurrency), httpSide, redisSide),
		throughputComparison(fmt.Sprintf("read throughput at %d workers vs net/http alone", cfg.Concurrency), httpSide, floorSide))
	res.PeakRSSBytes = r.peakRSS()
	res.Notes = r.notes
	return res
}

// httpFloor is net/http with nothing of TrackOps in it: a mux answering
// GET /api/v1/orders/{id} with a stored body. Against it the api-read
// scenario shows what HTTP itself costs on the machine (parsing, the
// response write, loopback TCP), which no cache can remove. It runs in the
// harness's process, beside the load's client, so it shares the same two
// cores as the TrackOps process does.
type httpFloor struct {
	base string
	srv  *http.Server
}

func startHTTPFloor(bodies map[string][]byte) (*httpFloor, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("http floor: %w", err)
	}
	contentType := []string{"application/json"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/orders/{id}", func(w http.ResponseWriter, req *http.Request) {
		body, ok := bodies[req.PathValue("id")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Header()["Content-Type"] = contentType
		w.Write(body)
	})
	f := &httpFloor{base: "http://" + ln.Addr().String(), srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	go f.srv.Serve(ln)
	return f, nil
}

func (f *httpFloor) close() { f.srv.Close() }

// forEach calls fn for 0..n-1 from workers goroutines and returns how many
// calls failed and one of their errors.
func forEach(ctx context.Context, workers, n int, fn func(ctx context.Context, i int) error) (int, string) {
	var errs atomic.Int64
	var sample atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range jobs {
				if err := fn(ctx, i); err != nil {
					errs.Add(1)
					sample.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	s, _ := sample.Load().(string)
	return int(errs.Load()), s
}
