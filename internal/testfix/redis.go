package testfix

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrMissingTool is returned when a program a fixture starts is not
// installed; the message says how to install it.
var ErrMissingTool = errors.New("not installed; run `make services` (scripts/ensure-services.sh installs it)")

// RequireTools returns an error naming the first of names that is not on
// PATH.
func RequireTools(names ...string) error {
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			return fmt.Errorf("testfix: %s is %w", n, ErrMissingTool)
		}
	}
	return nil
}

// Redis is a private redis-server on a free loopback port: its owner may
// kill, freeze and restart it without touching the machine's shared Redis.
// Nothing is persisted unless the owner asks (SAVE writes Dir/dump.rdb,
// loaded again by the next Start).
type Redis struct {
	Port int
	Dir  string
	// args are added to every start (cluster mode for cluster nodes).
	args []string
	cmd  *exec.Cmd
	// exited is closed when the running server's process has exited.
	exited chan struct{}
}

// StartRedis starts redis-server on a free port with its working
// directory in dir ("" makes a temporary directory, which the caller may
// remove after Kill) and waits until it answers PING; args are added to
// every start.
func StartRedis(dir string, args ...string) (*Redis, error) {
	if err := RequireTools("redis-server"); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "trackops-redis-"); err != nil {
			return nil, err
		}
	}
	r := &Redis{Port: port, Dir: dir, args: args}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// URL is the server's redis:// URL.
func (r *Redis) URL() string { return "redis://" + r.Addr() }

// Addr is the server's host:port.
func (r *Redis) Addr() string { return fmt.Sprintf("127.0.0.1:%d", r.Port) }

// Start (re)starts the server on its port, loading its RDB file if any, and
// waits until it answers.
func (r *Redis) Start() error {
	args := []string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--dir", r.Dir, "--save", "", "--appendonly", "no", "--databases", "16"}
	r.cmd = exec.Command("redis-server", append(args, r.args...)...)
	dieWithParent(r.cmd)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("testfix: start redis-server: %w", err)
	}
	exited := make(chan struct{})
	cmd := r.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	r.exited = exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		if line, err := r.Command("PING"); err == nil && strings.HasPrefix(line, "+PONG") {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("testfix: redis-server on port %d exited at start", r.Port)
		default:
		}
		if time.Now().After(deadline) {
			r.Kill()
			return fmt.Errorf("testfix: redis-server on port %d did not answer within 10 s", r.Port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command sends one inline command and returns the whole reply (a bulk
// string's body when the reply is one).
func (r *Redis) Command(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return "", err
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return line, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 0 {
		return line, err
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}

// Kill stops the server at once (SIGKILL: nothing saved) and waits for it.
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	if r.exited != nil {
		<-r.exited
	}
	r.cmd, r.exited = nil, nil
}

// Restart kills the server (as a crash would) and starts it again on the
// same port, empty unless the test had it SAVE.
func (r *Redis) Restart() error {
	r.Kill()
	return r.Start()
}

// Signal sends sig to the server (SIGSTOP freezes it, SIGCONT thaws it).
func (r *Redis) Signal(sig syscall.Signal) error {
	if r.cmd == nil || r.cmd.Process == nil {
		return fmt.Errorf("testfix: redis-server on port %d is not running", r.Port)
	}
	return r.cmd.Process.Signal(sig)
}

// Pause freezes the server (SIGSTOP): connections stay open, commands time
// out, data stays — a network partition without a restart.
func (r *Redis) Pause() error { return r.Signal(syscall.SIGSTOP) }

// Resume unfreezes a paused server (SIGCONT).
func (r *Redis) Resume() error { return r.Signal(syscall.SIGCONT) }

// RedisCluster is a private Redis Cluster: six redis-server processes in
// cluster mode on free loopback ports, three masters with one replica each,
// joined with `redis-cli --cluster create`.
type RedisCluster struct {
	Nodes []*Redis
}

// clusterNodes is the smallest cluster redis-cli builds with one replica
// per master.
const clusterNodes = 6

// StartRedisCluster starts a Redis Cluster with each node's directory
// under dir and waits until every node reports all 16384 slots served
// (cluster_state:ok). On failure the nodes started so far are killed.
func StartRedisCluster(dir string) (*RedisCluster, error) {
	if err := RequireTools("redis-server", "redis-cli"); err != nil {
		return nil, err
	}
	c := &RedisCluster{}
	fail := func(err error) (*RedisCluster, error) { c.Kill(); return nil, err }
	addrs := make([]string, 0, clusterNodes)
	for i := range clusterNodes {
		nodeDir := filepath.Join(dir, fmt.Sprintf("node%d", i))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			return fail(err)
		}
		busPort, err := FreePort()
		if err != nil {
			return fail(err)
		}
		// The cluster bus gets its own free port (Redis 7's cluster-port)
		// instead of port+10000, which may be taken or out of range. A
		// short node timeout lets a paused cluster come back quickly.
		n, err := StartRedis(nodeDir, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(nodeDir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "5000")
		if err != nil {
			return fail(err)
		}
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("testfix: redis-cli --cluster create: %w\n%s", err, out))
	}
	if err := c.WaitHealthy(); err != nil {
		return fail(err)
	}
	return c, nil
}

// WaitHealthy waits until every node serves all slots and knows all nodes;
// a deadline of a minute guards against a cluster that never forms.
func (c *RedisCluster) WaitHealthy() error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, last := true, ""
		for _, n := range c.Nodes {
			info, err := n.Command("CLUSTER INFO")
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_slots_ok:16384") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", clusterNodes)) {
				ok, last = false, fmt.Sprintf("node %s: %v %s", n.Addr(), err, info)
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testfix: Redis Cluster did not become healthy: %s", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addrs are the nodes' host:port addresses.
func (c *RedisCluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the cluster in TRACKOPS_REDIS_URL form: redis+cluster://h1:p,h2:p,...
func (c *RedisCluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Pause freezes every node (SIGSTOP): the whole cluster is unreachable, as
// in a network partition, and keeps its data and slot map.
func (c *RedisCluster) Pause() error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, n.Pause())
	}
	return errors.Join(errs...)
}

// Resume unfreezes every node and waits until the cluster is healthy again.
func (c *RedisCluster) Resume() error {
	for _, n := range c.Nodes {
		if err := n.Resume(); err != nil {
			return err
		}
	}
	return c.WaitHealthy()
}

// Kill stops every node at once.
func (c *RedisCluster) Kill() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}
