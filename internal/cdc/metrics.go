package cdc

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the CDC connectors' series: change events produced, the
// replication slot's lag, and the progress of snapshots, each labelled with
// the connector's name. A process builds them once, on its registry, and
// hands them to its connectors (Options.Metrics, ManagerOptions.Metrics);
// every connector of the process counts in the same series.
type Metrics struct {
	events          *prometheus.CounterVec
	retainedWAL     *prometheus.GaugeVec
	flushLag        *prometheus.GaugeVec
	lastEventAge    *prometheus.GaugeVec
	sourceLagMillis *prometheus.GaugeVec

	snapshotRunning         *prometheus.GaugeVec
	snapshotRowsRead        *prometheus.CounterVec
	snapshotChunks          *prometheus.CounterVec
	snapshotDeduplicated    *prometheus.CounterVec
	snapshotRowsEstimated   *prometheus.GaugeVec
	snapshotRemainingTables *prometheus.GaugeVec
}

// NewMetrics creates the CDC metrics and registers them on reg (nil:
// counted, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	var all []prometheus.Collector
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		all = append(all, c)
		return c
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		all = append(all, g)
		return g
	}
	m := &Metrics{
		events: counter("trackops_cdc_events_total",
			"Change events produced by the built-in CDC connector, by connector, table and op (c, u, d, r, t).",
			"connector", "table", "op"),
		retainedWAL: gauge("trackops_cdc_lag_bytes",
			"WAL the connector's replication slot retains: pg_current_wal_lsn() - restart_lsn.",
			"connector", "slot"),
		flushLag: gauge("trackops_cdc_flush_lag_bytes",
			"WAL written but not yet confirmed by the connector: pg_current_wal_lsn() - confirmed_flush_lsn.",
			"connector", "slot"),
		lastEventAge: gauge("trackops_cdc_last_event_age_seconds",
			"Seconds since the connector last produced a change event (-1 before the first).",
			"connector"),
		sourceLagMillis: gauge("trackops_cdc_source_lag_milliseconds",
			"Commit-to-produce delay of the last change event.",
			"connector"),

		snapshotRunning: gauge("trackops_cdc_snapshot_running",
			"1 while an ad-hoc snapshot (type incremental or blocking) of the connector runs.",
			"connector", "type"),
		snapshotRowsRead: counter("trackops_cdc_snapshot_rows_read_total",
			"Rows read by the connector's snapshots, by table and snapshot type (initial, incremental, blocking).",
			"connector", "table", "type"),
		snapshotChunks: counter("trackops_cdc_snapshot_chunks_total",
			"Chunks an incremental snapshot has read and emitted, by table.",
			"connector", "table"),
		snapshotDeduplicated: counter("trackops_cdc_snapshot_rows_deduplicated_total",
			"Rows an incremental snapshot dropped from a chunk because the stream carried a newer change of them.",
			"connector", "table"),
		snapshotRowsEstimated: gauge("trackops_cdc_snapshot_rows_estimated",
			"Estimated rows of the table an ad-hoc snapshot reads (pg_class.reltuples, or a count).",
			"connector", "table"),
		snapshotRemainingTables: gauge("trackops_cdc_snapshot_remaining_tables",
			"Tables an incremental snapshot has still to read, the current one included.",
			"connector"),
	}
	if reg != nil {
		reg.MustRegister(all...)
	}
	return m
}
