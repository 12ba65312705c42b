// Package metrics holds the registry a TrackOps process serves on /metrics
// and the collectors that read state on scrape — the PostgreSQL pool, the
// outbox backlog, consumer-group lag.
//
// Every component counts in metrics its constructor is given, registered
// on the registry the app owns (NewRegistry), never on the process-wide
// default registry: two apps in one process (tests) each serve their own.
// Every TrackOps series is named trackops_<subsystem>_<what>[_unit][_total]
// (Prometheus' conventions: base units, _total on counters; the app's
// TestObservabilityEndToEnd lints a running process's families with
// promlint, promtool's rules); Go runtime and process series come from
// client_golang's collectors, the Kafka clients' own from franz-go's kprom
// plugin.
package metrics

import (
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every TrackOps metric.
const Namespace = "trackops"

// NewRegistry returns a process's registry with the Go runtime and process
// collectors and trackops_build_info for version.
func NewRegistry(version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		BuildInfo(version, runtime.Version()),
	)
	return reg
}

// Handler serves reg in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// BuildInfo is a constant gauge of 1 labelled with the running version, the
// usual way to show versions on a dashboard.
func BuildInfo(version, goVersion string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Always 1; labelled with the TrackOps version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion},
	})
	g.Set(1)
	return g
}
