package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/cdc/connect"
	"github.com/trackops/trackops/internal/config"
	"github.com/trackops/trackops/internal/health"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/ops"
	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres"
	"github.com/trackops/trackops/internal/runinfo"
	"github.com/trackops/trackops/internal/tlsconfig"
)

func cdcCmd() *Command {
	return &Command{Name: "cdc", Summary: "show change data capture status (slot, publication, LSNs, lag)",
		Usage: "trackops cdc status [--json]", Args: []string{"status"}, Run: cdcCommand}
}

// buildCDC starts the connector manager of the cdc role, with its Kafka
// Connect REST API on TRACKOPS_CONNECT_ADDR; under the cdc strategy it also
// runs the built-in orders connector with the order domain's change stream.
func (a *App) buildCDC(orders *order.Service) error {
	if !a.roles.Has(RoleCDC) {
		a.routes = append(a.routes, httpapi.Route{Method: http.MethodGet, Pattern: "/api/v1/ops/cdc",
			Role: httpapi.RoleOperator, Handler: connect.ReportHandler(nil, a.pool, a.cfg.EventStrategy)})
		a.routes = append(a.routes, ops.SnapshotRoutes(ops.NoConnectors{})...)
		return nil
	}
	strategyCDC := a.cfg.EventStrategy == config.StrategyCDC
	if strategyCDC {
		if err := cdc.CheckWalLevel(context.Background(), a.pool); err != nil {
			return err
		}
	}
	// Every process of the cdc role runs every connector's lease; the
	// holder streams it, the others stand by (docs/deployment.md).
	a.cdc = cdc.NewManager(a.pool, cdc.ManagerOptions{
		Kafka:           a.kafkaOptions("trackops-cdc"),
		Logger:          a.log.With("component", "cdc"),
		WorkerID:        cdc.WorkerIDFor(a.cfg.CDC.ConnectAddr),
		TopicPartitions: a.cfg.Kafka.Partitions,
		DirectURL:       a.cfg.Database.Direct(),
		Metrics:         a.metrics.cdc,
	})
	a.routes = append(a.routes, httpapi.Route{Method: http.MethodGet, Pattern: "/api/v1/ops/cdc",
		Role: httpapi.RoleOperator, Handler: connect.ReportHandler(a.cdc, a.pool, a.cfg.EventStrategy)})
	// Ad-hoc snapshots from the console and the API: signals written to
	// each connector's signaling table.
	a.routes = append(a.routes, ops.SnapshotRoutes(ops.ManagerSnapshots(a.cdc))...)
	ln, err := net.Listen("tcp", a.cfg.CDC.ConnectAddr)
	if err != nil {
		return listenError("the CDC connector's Kafka Connect REST API", "TRACKOPS_CONNECT_ADDR", a.cfg.CDC.ConnectAddr, err,
			" (each process of the cdc role needs its own)")
	}
	a.closers = append(a.closers, func() { _ = ln.Close() }) // if New fails before Run serves it
	connectLog := a.log.With("component", "connect")
	var auth httpapi.Authenticator
	if a.security.auth != nil {
		auth = connect.BasicAuth(a.security.auth)
	}
	guarded := httpapi.NewRouter(httpapi.RouterConfig{
		Logger: connectLog, Auth: auth, Limiter: a.security.limiter, Auditor: a.security.audit,
		MaxBodyBytes: a.cfg.HTTP.MaxBodyBytes, Metrics: a.metrics.http,
		// Kafka Connect's REST API keeps its own paths and error shape;
		// reading needs the operator role, changing connectors the admin role.
		Errors: connect.WriteError, Challenges: connect.Challenges,
	}, connectRoutes(connect.NewHandler(a.cdc, Version, connectLog)))
	// The same API on the platform's own port, for the ops console.
	a.routes = append(a.routes, ops.ConnectRoutes(connect.NewHandler(a.cdc, Version, connectLog))...)
	srv := &http.Server{Handler: guarded, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(connectLog.Handler(), slog.LevelWarn)}
	if a.cfg.HTTP.TLSCertFile != "" {
		// Tokens and passwords cross this port too: TLS as on the main port.
		tc, err := tlsconfig.Server(a.cfg.HTTP.TLSCertFile, a.cfg.HTTP.TLSKeyFile)
		if err != nil {
			return err
		}
		srv.TLSConfig = tc
	}
	a.workers = append(a.workers, worker{name: "cdc", run: func(ctx context.Context) error {
		go func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("Kafka Connect REST API stopped", "addr", a.cfg.CDC.ConnectAddr, "err", err)
			}
		}()
		if err := a.cdc.Start(ctx); err != nil {
			a.log.Error("cdc manager", "err", err)
		}
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
		a.cdc.Close()
		return nil
	}})
	if !strategyCDC {
		return nil
	}
	// The order domain's change stream builds the order events from each
	// committed transaction and refreshes the order cache; a process
	// without the orders role gets a service of its own for the cache.
	// Replication needs a session of its own: the direct URL.
	cfg, err := order.ConnectorConfig(a.cfg.Database.Direct())
	if err != nil {
		return err
	}
	cfg["slot.name"] = a.cfg.CDC.SlotName
	// Signals (ad-hoc snapshots) through the table migration 00039 creates.
	cfg["signal.data.collection"] = BuiltinSignalTable
	if orders == nil {
		orders = order.NewService(a.pool, order.WithChangeStream(), order.WithCache(order.NewRedisCache(a.stores)))
	}
	stream := order.NewChangeStream(orders, a.log.With("component", "order-change-stream"))
	return a.cdc.RunBuiltin(order.ConnectorName, cfg, cdc.WithTransform(stream))
}

// BuiltinSignalTable is the built-in connector's signal.data.collection.
const BuiltinSignalTable = "public.debezium_signal"

// connectRoutes puts the Kafka Connect REST API behind the router's
// authentication: GETs need operator, everything else admin.
func connectRoutes(h http.Handler) []httpapi.Route {
	read := func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }
	var routes []httpapi.Route
	for _, p := range []string{"/", "/connectors", "/connectors/{name}", "/connectors/{name}/{rest...}", "/connector-plugins", "/connector-plugins/{rest...}"} {
		routes = append(routes, httpapi.Route{Method: http.MethodGet, Pattern: p, Role: httpapi.RoleOperator, Handler: read})
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			if p == "/" {
				continue
			}
			routes = append(routes, httpapi.Route{Method: m, Pattern: p, Role: httpapi.RoleAdmin, Handler: read})
		}
	}
	// Every other path and method reaches the handler too (after
	// authentication), which answers Kafka Connect's 404 or 405.
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		routes = append(routes, httpapi.Route{Method: m, Pattern: "/{rest...}", Role: httpapi.RoleAdmin, Handler: read})
	}
	return routes
}

// cdcStatusSource feeds the health cdc component from the running built-in
// connector; nil when this process runs none.
func (a *App) cdcStatusSource() health.CDCStatusSource {
	if !a.roles.Has(RoleCDC) || a.cfg.EventStrategy != config.StrategyCDC {
		return nil
	}
	return health.CDCStatusFunc(func(ctx context.Context) (health.CDCStatus, error) {
		if a.cdc == nil {
			return health.CDCStatus{}, errors.New("connector not started")
		}
		st, err := a.cdc.StatusOf(ctx, order.ConnectorName)
		if err != nil {
			return health.CDCStatus{}, err
		}
		return health.CDCStatus{Connector: st.Name, State: st.State, LagSeconds: float64(st.LagMillis) / 1000,
			Topics: st.Topics, Error: st.Trace}, nil
	})
}

func cdcCommand(ctx context.Context, env *Env, args []string) error {
	rest, err := subcommand(args, "status")
	if err != nil {
		return err
	}
	fs := newFlagSet("cdc status", env.Stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	pool, err := postgres.Connect(ctx, env.Config.Database.URL, poolOptions(env.Config)...)
	if err != nil {
		return err
	}
	defer pool.Close()
	walErr := cdc.CheckWalLevel(ctx, pool)
	slots, err := cdc.Slots(ctx, pool)
	if err != nil {
		return err
	}
	strategy, source, err := platformStrategy(ctx, pool, env.Config)
	if err != nil {
		return err
	}
	connectors, err := cdc.Connectors(ctx, pool)
	if err != nil && !postgres.IsCode(err, "42P01") && !postgres.IsCode(err, "42703") {
		return err
	}
	snapshots, err := cdc.SnapshotsInProgress(ctx, pool)
	if err != nil {
		return err
	}
	if *asJSON {
		if snapshots == nil {
			snapshots = []cdc.ConnectorSnapshot{}
		}
		out := map[string]any{"strategy": strategy, "strategy_source": source, "slots": slots, "connectors": connectors,
			"incremental_snapshots": snapshots}
		if walErr != nil {
			out["wal_level_error"] = walErr.Error()
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(env.Stdout, "strategy: %s (%s)\n", strategy, source)
	if walErr != nil {
		fmt.Fprintf(env.Stdout, "warning: %v\n", walErr)
	}
	if len(connectors) > 0 {
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CONNECTOR\tSTATE\tACTIVE WORKER\tBUILT-IN")
		for _, c := range connectors {
			worker := c.ActiveWorkerID
			if worker == "" {
				worker = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", c.Name, c.State, worker, c.Builtin)
		}
		tw.Flush()
	}
	if len(slots) == 0 {
		fmt.Fprintf(env.Stdout, "no logical replication slots in this database (the cdc strategy creates %s)\n", env.Config.CDC.SlotName)
	} else {
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SLOT\tPLUGIN\tACTIVE\tPUBLICATION\tRESTART LSN\tCONFIRMED FLUSH LSN\tCURRENT WAL LSN\tRETAINED BYTES\tLAG BYTES\tCONNECTOR STATE")
		for _, s := range slots {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Slot, s.Plugin, s.Active, strings.Join(s.Publications, ","),
				s.RestartLSN, s.ConfirmedFlushLSN, s.CurrentWALLSN, s.RetainedWALBytes, s.LagBytes, s.ConnectorState)
		}
		tw.Flush()
	}
	if len(snapshots) > 0 {
		// As the offsets record them: up to the last confirmed position.
		fmt.Fprintln(env.Stdout, "\nincremental snapshots (as of each connector's last confirmed position):")
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "CONNECTOR\tSTATE\tTABLE\tTABLES DONE\tTABLE ROWS READ\tCHUNKS\tROWS READ\tSIGNAL")
		for _, s := range snapshots {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d of ~%d\t%d\t%d\t%s\n", s.Connector, s.State, s.CurrentTable, s.TablesDone, s.TablesTotal,
				s.TableRowsRead, s.TableRowsEstimate, s.Chunks, s.RowsRead, s.SignalID)
		}
		tw.Flush()
	}
	_ = os.Stdout.Sync()
	return nil
}

// platformStrategy is the event strategy of the running platform, as its
// last `trackops run` recorded it, and where the answer comes from. Only
// when no platform ever ran on the database does this shell's own
// TRACKOPS_EVENT_STRATEGY stand in, and the source says so.
func platformStrategy(ctx context.Context, db postgres.Querier, cfg config.Config) (strategy, source string, err error) {
	e, ok, err := runinfo.Get(ctx, db, runinfo.EventStrategy)
	if err != nil && !postgres.IsCode(err, "42P01") { // a database not migrated yet has no record
		return "", "", err
	}
	if !ok {
		return cfg.EventStrategy, "no platform has run on this database; this shell's TRACKOPS_EVENT_STRATEGY", nil
	}
	source = "recorded by " + e.SetBy + " at " + e.SetAt.UTC().Format(time.RFC3339)
	if e.Value != cfg.EventStrategy {
		source += "; this shell's TRACKOPS_EVENT_STRATEGY is " + cfg.EventStrategy
	}
	return e.Value, source, nil
}

// waitForCDCSlot blocks, under the cdc strategy in a process that takes
// orders, until the built-in connector's replication slot is ready —
// created by this process's cdc role or by another process — so that no
// order is committed before its change can be captured. It gives up after
// two minutes with an actionable error.
func (a *App) waitForCDCSlot(ctx context.Context) error {
	if a.cfg.EventStrategy != config.StrategyCDC || !a.roles.Has(RoleOrders) {
		return nil
	}
	err := cdc.WaitForSlot(ctx, a.pool, a.cfg.CDC.SlotName, 2*time.Minute, func() {
		a.log.Info("waiting for the CDC replication slot before taking orders", "slot", a.cfg.CDC.SlotName)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w; under TRACKOPS_EVENT_STRATEGY=cdc a process with the cdc role must run (see `trackops cdc status`)", err)
	}
	return err
}
