//go:build linux

package cdc

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLowWaterMarkNeverHoldsBackData: while a large transaction streams,
// the replication socket wakes the poller only for readaheadLowat bytes,
// yet a read still gets whatever is queued, a read that has to wait is
// woken by a single byte (the end of a transaction is never held back),
// and the mark is back at one byte once the transaction is over.
func TestLowWaterMarkNeverHoldsBackData(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()

	var r readahead
	for range readaheadAfter {
		r.follow(true)
	}
	conn := &pacedConn{Conn: client, r: &r, sock: socketControlOf(client)}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	read := func(want string) {
		t.Helper()
		n, err := conn.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, want)
		}
	}

	// Queued below the mark: read at once.
	write(t, server, "begin")
	waitQueued(t, client, len("begin"))
	read("begin")
	if got := lowat(t, client); got != readaheadLowat {
		t.Fatalf("SO_RCVLOWAT %d after a read inside a large transaction, want %d", got, readaheadLowat)
	}

	// Nothing queued: the read waits, and a few bytes wake it (with the
	// mark left raised it would sleep until the deadline).
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = server.Write([]byte("commit"))
	}()
	read("commit")

	r.follow(false)
	write(t, server, "next")
	read("next")
	if got := lowat(t, client); got != 1 {
		t.Fatalf("SO_RCVLOWAT %d outside a large transaction, want 1", got)
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func waitQueued(t *testing.T, c net.Conn, n int) {
	t.Helper()
	s := socketControlOf(c)
	eventually(t, "bytes queued", 5*time.Second, func() bool { return s.queued() >= n })
}

func lowat(t *testing.T, c net.Conn) int {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	if err := raw.Control(func(fd uintptr) {
		v, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT)
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}
