//go:build !unix

package testfix

import "errors"

// RefusedAddr needs a socket bound without listening, which this package
// builds only on Unix.
func RefusedAddr() (addr string, release func(), err error) {
	return "", nil, errors.New("testfix: refused addr: not supported on this system")
}
