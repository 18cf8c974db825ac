//go:build !linux

package main

import "syscall"

// bindNoPort does nothing outside Linux (see bind_linux.go).
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
