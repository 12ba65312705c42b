//go:build unix

package testfix

import (
	"errors"
	"net"
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
