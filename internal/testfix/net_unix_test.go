//go:build unix

package testfix

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRefusedAddrRefusesAndCannotBeTaken checks both halves of the promise:
// a dial is refused, and a listener cannot take the port while it is held.
func TestRefusedAddrRefusesAndCannotBeTaken(t *testing.T) {
	addr, release, err := RefusedAddr()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if c, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); !errors.Is(err, syscall.EADDRINUSE) {
		if ln != nil {
			ln.Close()
		}
		t.Fatalf("listen %s: %v, want address in use", addr, err)
	}
	release()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s after release: %v", addr, err)
	}
	ln.Close()
}

// TestFreeAddrNeverHandsAPortTwice checks that ports handed out stay
// handed out: never twice in this process, and locked against every other
// process that asks (an independent open of the lock file stands in for
// another test binary: flock locks belong to the open file, not the
// process).
func TestFreeAddrNeverHandsAPortTwice(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("FreeAddr handed out %s twice", addr)
		}
		seen[addr] = true
	}
	for addr := range seen {
		_, port, _ := net.SplitHostPort(addr)
		f, err := os.Open(filepath.Join(portLockDir(), port))
		if err != nil {
			t.Fatalf("lock file of %s: %v", addr, err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("another process could lock %s: %v", addr, err)
		}
	}
}
