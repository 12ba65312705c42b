package health_test

import (
	"testing"

	"github.com/trackops/trackops/internal/cache/cachetest"
	"github.com/trackops/trackops/internal/testfix"
)

// The fault tests of this package use the shared fixture layer: a private
// redis-server (cachetest over testfix, failing when redis-server is
// missing) and a TCP proxy between the pool and the shared PostgreSQL, which
// a test must never stop.

func startRedisServer(t testing.TB) *cachetest.Server { return cachetest.StartServer(t) }

// tcpProxy is a testfix.Proxy that fails the test when it cannot restore.
type tcpProxy struct {
	*testfix.Proxy
	t testing.TB
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	p, err := testfix.NewProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Cut)
	return &tcpProxy{Proxy: p, t: t}
}

func (p *tcpProxy) Restore() {
	p.t.Helper()
	if err := p.Proxy.Restore(); err != nil {
		p.t.Fatal(err)
	}
}
