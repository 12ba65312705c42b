package cachetest

import (
	"testing"

	"github.com/trackops/trackops/internal/testfix"
)

// Server is a private redis-server for fault tests (testfix.Redis): the
// test may pause, kill and restart it without touching the machine's shared
// Redis.
type Server struct {
	*testfix.Redis
	t testing.TB
}

// StartServer starts redis-server on a free loopback port with its working
// directory (and RDB file) in a temporary directory, and kills it when the
// test ends. A missing redis-server fails the test: the project's set-up
// installs it, and a test never passes by skipping.
func StartServer(t testing.TB) *Server {
	t.Helper()
	r, err := testfix.StartRedis(t.TempDir())
	if err != nil {
		t.Fatalf("cachetest: %v", err)
	}
	t.Cleanup(r.Kill)
	return &Server{Redis: r, t: t}
}

// Start restarts the server on its port after Kill, loading its RDB file.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.Redis.Start(); err != nil {
		s.t.Fatalf("cachetest: %v", err)
	}
}

// Pause freezes the server (SIGSTOP).
func (s *Server) Pause() {
	s.t.Helper()
	if err := s.Redis.Pause(); err != nil {
		s.t.Fatalf("cachetest: %v", err)
	}
}

// Resume unfreezes a paused server (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.Redis.Resume(); err != nil {
		s.t.Fatalf("cachetest: %v", err)
	}
}

// Cluster is a private Redis Cluster (testfix.RedisCluster), torn down when
// the test ends.
type Cluster struct {
	*testfix.RedisCluster
	t testing.TB
}

// StartCluster starts a six-node Redis Cluster for t and waits until it
// serves every slot.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := testfix.StartRedisCluster(t.TempDir())
	if err != nil {
		t.Fatalf("cachetest: %v", err)
	}
	t.Cleanup(c.Kill)
	return &Cluster{RedisCluster: c, t: t}
}

// Pause freezes every node (SIGSTOP).
func (c *Cluster) Pause() {
	c.t.Helper()
	if err := c.RedisCluster.Pause(); err != nil {
		c.t.Fatalf("cachetest: %v", err)
	}
}

// Resume unfreezes every node and waits until the cluster is healthy.
func (c *Cluster) Resume() {
	c.t.Helper()
	if err := c.RedisCluster.Resume(); err != nil {
		c.t.Fatalf("cachetest: %v", err)
	}
}
