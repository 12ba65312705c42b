// Package metrics holds TrackOps' Prometheus collectors that read state on
// scrape — the PostgreSQL pool, the outbox backlog, consumer-group lag — and
// the Kafka client hooks that count produced records.
//
// Every TrackOps series is named trackops_<subsystem>_<what>[_unit][_total]
// (Prometheus' conventions: base units, _total on counters); Go runtime and
// process series come from client_golang's default collectors.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every TrackOps metric.
const Namespace = "trackops"

// Register registers collectors on reg, replacing equal collectors already
// registered (a process that builds its components again, as tests do, gets
// the new ones). The returned function unregisters them.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (unregister func(), err error) {
	var done []prometheus.Collector
	unregister = func() {
		for _, c := range done {
			reg.Unregister(c)
		}
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				unregister()
				return func() {}, err
			}
			reg.Unregister(are.ExistingCollector)
			if err := reg.Register(c); err != nil {
				unregister()
				return func() {}, err
			}
		}
		done = append(done, c)
	}
	return unregister, nil
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
