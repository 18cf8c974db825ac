// Package testport finds free loopback ports for the servers that test
// helpers start as child processes (pgtest's PostgreSQL, s3test's
// SeaweedFS), which must be told a port rather than listen on port 0.
//
// It is for tests and their helper packages only.
package testport

import "net"

// Free returns a port of 127.0.0.1 that was free a moment ago, or the
// error of listening on it.
func Free() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
