//go:build unix

package testfix

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// lockPort takes an exclusive lock on a file named after port in a
// directory every process using FreeAddr shares (test binaries, the bench
// harness), and keeps it until the process exits: the kernel drops the
// lock with the process, even on a crash. A port another process holds is
// refused.
func lockPort(port int) bool {
	if portLockDirReady() != nil {
		return true // no shared directory: the in-process check still holds
	}
	f, err := os.OpenFile(filepath.Join(portLockDir(), fmt.Sprint(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	heldPorts = append(heldPorts, f) // held, not closed: closing would drop the lock
	return true
}

func portLockDir() string { return filepath.Join(os.TempDir(), "trackops-ports") }

// portLockDirReady creates the lock directory, once per process.
var portLockDirReady = sync.OnceValue(func() error { return os.MkdirAll(portLockDir(), 0o777) })

// heldPorts keeps the lock files open; guarded by handedMu.
var heldPorts []*os.File

// RefusedAddr returns a loopback address whose connections are refused
// for as long as the test runs, and the function that releases it. A port
// picked free and left unbound can be taken by a parallel test's listener
// before the dial; this one stays bound by a socket that never listens and
// never sets SO_REUSEADDR, so no one else can bind it and every dial gets
// ECONNREFUSED.
func RefusedAddr() (addr string, release func(), err error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("testfix: refused addr: socket: %w", err)
	}
	// Once: a second close could close a descriptor reused since.
	release = sync.OnceFunc(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		release()
		return "", nil, fmt.Errorf("testfix: refused addr: bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		release()
		return "", nil, fmt.Errorf("testfix: refused addr: getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		release()
		return "", nil, fmt.Errorf("testfix: refused addr: unexpected socket address %T", sa)
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(in4.Port)), release, nil
}
