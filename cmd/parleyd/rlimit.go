package main

import (
	"log/slog"
	"syscall"
)

// reservedFiles are the descriptors kept for the store, listeners, logs and
// the rest when estimating how many connections fit.
const reservedFiles = 100

// raiseOpenFiles raises the soft limit on open files to the hard limit (each
// MQTT connection holds one descriptor) and returns the soft limit in force.
func raiseOpenFiles(log *slog.Logger) uint64 {
	if log == nil {
		log = slog.Default()
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("read the open files limit", "error", err)
		return 0
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			log.Warn("raise the open files limit", "from", lim.Cur, "to", lim.Max, "error", err)
		} else {
			lim = raised
		}
	}
	return lim.Cur
}

// connectionCapacity is about how many connections fit in limit open files.
func connectionCapacity(limit uint64) int64 {
	return max(int64(limit)-reservedFiles, 0)
}
