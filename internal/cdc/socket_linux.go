//go:build linux

package cdc

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// socketControl reads and sets what the replication connection's pacing
// needs of its socket. Its zero value (a connection without a socket, as
// in tests over net.Pipe) reports data queued and sets nothing, which
// leaves reads as they would be without it.
type socketControl struct{ raw syscall.RawConn }

func socketControlOf(conn net.Conn) socketControl {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return socketControl{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return socketControl{}
	}
	return socketControl{raw: raw}
}

// queued is how many bytes wait in the socket's receive queue (-1 when
// unknown).
func (s socketControl) queued() int {
	if s.raw == nil {
		return -1
	}
	n := -1
	_ = s.raw.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			n = v
		}
	})
	return n
}

// setLowat sets SO_RCVLOWAT: the bytes that must be queued before the
// socket reports itself readable. A failure leaves the mark as it was,
// which costs wake-ups, never data.
func (s socketControl) setLowat(bytes int) {
	if s.raw == nil {
		return
	}
	_ = s.raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, bytes)
	})
}
