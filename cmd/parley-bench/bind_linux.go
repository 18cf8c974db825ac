package main

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort is a net.Dialer Control function for a dial from a given
// source address: IP_BIND_ADDRESS_NO_PORT defers the choice of the source
// port from bind to connect. Without it the kernel picks the port at bind,
// among every port of the address in use or in TIME_WAIT (with tens of
// thousands of connections, milliseconds of CPU per dial: the load
// generator, not Parley, then limits the connect rate).
func bindNoPort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
