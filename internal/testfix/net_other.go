//go:build !unix

package testfix

import "errors"

// RefusedAddr needs a socket bound without listening, which this package
// builds only on Unix.
func RefusedAddr() (addr string, release func(), err error) {
	return "", nil, errors.New("testfix: refused addr: not supported on this system")
}

// lockPort has no lock shared between processes here; FreeAddr still never
// hands out a port twice within one binary.
func lockPort(int) bool { return true }
