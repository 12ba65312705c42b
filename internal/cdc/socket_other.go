//go:build !linux

package cdc

import "net"

// socketControl does nothing outside Linux: reads are paced by the nap
// alone.
type socketControl struct{}

func socketControlOf(net.Conn) socketControl { return socketControl{} }

func (socketControl) queued() int { return -1 }

func (socketControl) setLowat(int) {}
