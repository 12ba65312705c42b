package testfix

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"
)

// FreeAddr returns a loopback address with a port nobody listens on now,
// and that no other caller of FreeAddr on this machine is handed while
// this process runs.
//
// The port comes from below the kernel's ephemeral range: a port the
// kernel hands out for 127.0.0.1:0 is also what it gives the next outgoing
// connection (to PostgreSQL, Redis, the broker), which could take it before
// the process the test starts binds it. Below that range only explicit
// binds compete, and those of other tests are ruled out: a process never
// hands out a port twice, and it holds a lock on each port it handed out
// (reservePort), which every test binary of the suite, running in
// parallel, respects.
func FreeAddr() (string, error) {
	low := ephemeralLow()
	from := max(low-12000, 10000)
	var lastErr error
	for range 50 {
		port := from + rand.IntN(low-from)
		if !reservePort(port) {
			lastErr = fmt.Errorf("port %d handed to another test", port)
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			lastErr = err
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr, nil
	}
	return "", fmt.Errorf("testfix: free port below %d: %w", low, lastErr)
}

var (
	handedMu sync.Mutex
	handed   = map[int]bool{} // ports FreeAddr reserved in this process
)

// reservePort reserves port for this process's lifetime: false when it
// was reserved already, here or by another process.
func reservePort(port int) bool {
	handedMu.Lock()
	defer handedMu.Unlock()
	if handed[port] || !lockPort(port) {
		return false
	}
	handed[port] = true
	return true
}

// ephemeralLow is the lowest port of the kernel's ephemeral range, read
// once.
var ephemeralLow = sync.OnceValue(func() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		var lo, hi int
		if _, err := fmt.Sscan(string(b), &lo, &hi); err == nil && lo > 11000 {
			low = lo
		}
	}
	return low
})

// FreePort returns a loopback port nobody listens on now.
func FreePort() (int, error) {
	addr, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	var n int
	_, err = fmt.Sscan(port, &n)
	return n, err
}

// Proxy forwards a loopback port to a target. Cut drops every connection
// and stops listening; Restore listens on the same port again. It stands
// between TrackOps and a shared server (PostgreSQL, Redis) that a test must
// never stop.
type Proxy struct {
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

// NewProxy listens on a free loopback port and forwards to target.
func NewProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testfix: proxy: %w", err)
	}
	p := &Proxy{addr: ln.Addr().String(), target: target}
	p.serve(ln)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// Cut closes the listener and every proxied connection.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore listens on the proxy's port again. The port may linger for a
// moment after Cut; Restore retries for up to a second.
func (p *Proxy) Restore() error {
	deadline := time.Now().Add(time.Second)
	for {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(ln)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testfix: proxy restore on %s: %w", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
