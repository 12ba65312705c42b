package cdc

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Inside a large transaction the walsender sends one message per change,
// and a connector faster than the walsender would drain the socket after
// every message or two: each change would then cost a read, a poller wait
// and a wake-up, more CPU than decoding and encoding it. Once a
// transaction has streamed readaheadAfter messages:
//   - a read that follows a read which emptied the socket first waits
//     readaheadNap, so the next read takes hundreds of messages at once
//     (replicationReadBuffer lets it);
//   - the socket's receive low-water mark (SO_RCVLOWAT) is raised to
//     readaheadLowat, so the walsender's many small writes stop waking the
//     process's network poller while the connector is busy or pausing.
//     Without it an idle thread woke, found nothing to run and slept again
//     for nearly every write: a third of the connector's CPU. Before a
//     read that would wait (nothing queued), the mark goes back to one
//     byte, so the end of the transaction is never held back.
//
// The walsender keeps writing into the socket buffers meanwhile, so
// throughput is unchanged; small transactions, and the first
// readaheadAfter messages of any, are never delayed.
const (
	readaheadAfter = 1000
	readaheadNap   = 500 * time.Microsecond
	readaheadLowat = 64 << 10
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
		return &pacedConn{Conn: conn, r: r, sock: socketControlOf(conn), lowat: 1}, nil
	}
}

// pacedConn is a net.Conn whose reads wait a moment after a read that
// emptied the socket, and whose socket wakes the poller only for
// readaheadLowat bytes, while its readahead is on. Reads come one at a
// time (pgconn's reader serializes them).
type pacedConn struct {
	net.Conn
	r       *readahead
	sock    socketControl
	drained bool // the last read returned less than asked: the socket was empty
	lowat   int  // the low-water mark set on the socket (the kernel's default is 1)
}

func (c *pacedConn) Read(p []byte) (int, error) {
	if !c.r.on.Load() {
		c.setLowat(1)
		n, err := c.Conn.Read(p)
		c.drained = n < len(p)
		return n, err
	}
	if c.drained {
		time.Sleep(readaheadNap)
	}
	// A read with nothing queued waits for data: any byte must wake it.
	if c.sock.queued() <= 0 {
		c.setLowat(1)
	}
	n, err := c.Conn.Read(p)
	c.drained = n < len(p)
	c.setLowat(readaheadLowat)
	return n, err
}

// setLowat sets the socket's receive low-water mark, if it is not set to
// that already.
func (c *pacedConn) setLowat(bytes int) {
	if c.lowat == bytes {
		return
	}
	c.sock.setLowat(bytes)
	c.lowat = bytes
}

// replicationReadBuffer is how much of the replication stream one read
// from the socket may take. pgproto3 reads at most 8 KB at a time, about
// forty changes of a narrow table.
const replicationReadBuffer = 256 << 10

// bufferedFrontend is the replication connection's protocol reader:
// pgconn's own, over a buffer of replicationReadBuffer bytes.
func bufferedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(r, replicationReadBuffer), w)
}
