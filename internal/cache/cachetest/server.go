package cachetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a private redis-server for fault tests: the test may pause,
// kill and restart it without touching the machine's shared Redis.
type Server struct {
	t    testing.TB
	Port int
	Dir  string
	// args are added to every start (cluster mode for cluster nodes).
	args []string
	cmd  *exec.Cmd
}

// StartServer starts redis-server on a free loopback port with its working
// directory (and RDB file) in a temporary directory, and stops it when the
// test ends. Snapshots are taken only when the test asks (SAVE).
func StartServer(t testing.TB) *Server {
	t.Helper()
	requireTool(t, "redis-server")
	s := &Server{t: t, Port: freePort(t), Dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Kill)
	return s
}

// requireTool fails the test when a program it starts is missing: the
// project's set-up (scripts/ensure-services.sh) installs it, and a test must
// never pass by skipping.
func requireTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("cachetest: %s is not installed; run `make services` (scripts/ensure-services.sh installs it)", name)
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cachetest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d", s.Port) }

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Start (re)starts the server on its port, loading its RDB file if any, and
// waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.Dir, "--save", "", "--appendonly", "no", "--databases", "16"}
	s.cmd = exec.Command("redis-server", append(args, s.args...)...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("cachetest: start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if line, err := s.command("PING"); err == nil && strings.HasPrefix(line, "+PONG") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("cachetest: redis-server on port %d did not start", s.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// command sends one inline command and returns the whole reply (a bulk
// string's body when the reply is one).
func (s *Server) command(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return line, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return line, err
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}

// Kill stops the server at once (SIGKILL: nothing saved) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open, commands time
// out, data stays — a network partition without a restart.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume unfreezes a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		s.t.Fatalf("cachetest: redis-server not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("cachetest: signal redis-server: %v", err)
	}
}

// Cluster is a private Redis Cluster: six redis-server processes in cluster
// mode on free loopback ports, three masters with one replica each, joined
// with `redis-cli --cluster create`. It is torn down when the test ends.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// clusterNodes is the smallest cluster redis-cli builds with one replica
// per master.
const clusterNodes = 6

// StartCluster starts a Redis Cluster for t and waits until every node
// reports all 16384 slots served (cluster_state:ok).
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	requireTool(t, "redis-server")
	requireTool(t, "redis-cli")
	c := &Cluster{t: t}
	t.Cleanup(c.Kill)
	addrs := make([]string, 0, clusterNodes)
	for range clusterNodes {
		s := &Server{t: t, Port: freePort(t), Dir: t.TempDir()}
		// The cluster bus gets its own free port (Redis 7's cluster-port)
		// instead of port+10000, which may be taken or out of range. A
		// short node timeout lets a paused cluster come back quickly.
		s.args = []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.Dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(freePort(t)),
			"--cluster-node-timeout", "5000"}
		s.Start()
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("cachetest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.waitHealthy()
	return c
}

// waitHealthy waits until every node serves all slots and knows all nodes;
// a deadline guards against a cluster that never forms.
func (c *Cluster) waitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, last := true, ""
		for _, n := range c.Nodes {
			info, err := n.command("CLUSTER INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_slots_ok:16384") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", clusterNodes)) {
				ok, last = false, fmt.Sprintf("node %s: %v %s", n.Addr(), err, info)
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cachetest: Redis Cluster did not become healthy: %s", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the cluster in TRACKOPS_REDIS_URL form: redis+cluster://h1:p,h2:p,...
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Pause freezes every node (SIGSTOP): the whole cluster is unreachable, as
// in a network partition, and keeps its data and slot map.
func (c *Cluster) Pause() {
	for _, n := range c.Nodes {
		n.Pause()
	}
}

// Resume unfreezes every node and waits until the cluster is healthy again.
func (c *Cluster) Resume() {
	for _, n := range c.Nodes {
		n.Resume()
	}
	c.waitHealthy()
}

// Kill stops every node at once.
func (c *Cluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}
