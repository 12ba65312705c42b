package cdc

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Inside a large transaction the walsender sends one message per change,
// and a connector faster than the walsender drains the socket after every
// message or two: each change then costs a read, a poller wait and a
// wake-up, more CPU than decoding and encoding it. Once a transaction has
// streamed readaheadAfter messages, a read that follows a read which
// emptied the socket first waits readaheadNap, so the next read takes
// dozens of messages at once. The walsender keeps writing into the socket
// buffers meanwhile, so throughput is unchanged; small transactions, and
// the first readaheadAfter messages of any, are never delayed.
const (
	readaheadAfter = 1000
	readaheadNap   = 500 * time.Microsecond
)

// readahead is the replication connection's read pacing, switched on by
// the stream while a large transaction streams.
type readahead struct {
	on   atomic.Bool
	msgs int // messages of the open transaction; stream goroutine only
}

// follow is called by the stream after each message: it counts the open
// transaction's messages and switches pacing on past readaheadAfter, off
// once no transaction is open. A nil readahead does nothing.
func (r *readahead) follow(inTx bool) {
	if r == nil {
		return
	}
	if !inTx {
		if r.msgs > 0 {
			r.msgs = 0
			r.on.Store(false)
		}
		return
	}
	r.msgs++
	if r.msgs == readaheadAfter {
		r.on.Store(true)
	}
}

// dialer wraps dial so the connections it makes read with r's pacing. It
// sits below TLS, so encrypted streams are paced too.
func (r *readahead) dialer(dial pgconn.DialFunc) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &pacedConn{Conn: conn, r: r}, nil
	}
}

// pacedConn is a net.Conn whose reads wait a moment after a read that
// emptied the socket, while its readahead is on. Reads come one at a time
// (pgconn's reader serializes them).
type pacedConn struct {
	net.Conn
	r       *readahead
	drained bool // the last read returned less than asked: the socket was empty
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if c.drained && c.r.on.Load() {
		time.Sleep(readaheadNap)
	}
	n, err := c.Conn.Read(p)
	c.drained = n < len(p)
	return n, err
}
