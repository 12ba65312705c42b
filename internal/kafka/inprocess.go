package kafka

import (
	"context"
	"fmt"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// inProcessListener is the embedded broker's listener: it accepts TCP
// connections from other processes and, from clients in the same process,
// in-memory ones. A client in the process would otherwise go through the
// loopback TCP stack for every request and response: two system calls and
// a poller wake-up each way, which at a few thousand Kafka requests a
// second is a large share of the process's CPU. An in-memory connection
// hands the bytes from goroutine to goroutine instead.
type inProcessListener struct {
	net.Listener
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	acceptErr chan error
}

func newInProcessListener(tcp net.Listener) *inProcessListener {
	l := &inProcessListener{Listener: tcp, conns: make(chan net.Conn), closed: make(chan struct{}), acceptErr: make(chan error, 1)}
	go l.acceptTCP()
	return l
}

// acceptTCP feeds Accept with the TCP listener's connections until it
// fails (closed).
func (l *inProcessListener) acceptTCP() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			l.acceptErr <- err
			return
		}
		select {
		case l.conns <- c:
		case <-l.closed:
			_ = c.Close()
			return
		}
	}
}

// Accept returns the next connection, TCP or in-memory.
func (l *inProcessListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.acceptErr:
		l.acceptErr <- err
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops both kinds of connection from being accepted.
func (l *inProcessListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// dial connects in memory.
func (l *inProcessListener) dial(ctx context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, fmt.Errorf("embedded kafka broker: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// InProcessDialer is the client option that connects clients of this
// process to the embedded broker in memory rather than over TCP; other
// addresses are dialled as usual. It cannot be combined with kgo's own TLS
// dialing (the embedded broker speaks plaintext only).
func (e *Embedded) InProcessDialer() kgo.Opt {
	ours := map[string]bool{e.addr: true, e.configuredAddr: true}
	var d net.Dialer
	return kgo.Dialer(func(ctx context.Context, network, host string) (net.Conn, error) {
		if ours[host] {
			return e.listener.dial(ctx)
		}
		return d.DialContext(ctx, network, host)
	})
}
