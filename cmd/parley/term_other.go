//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "io"

// cbreak reports that the terminal cannot be put in cbreak mode here: chat
// reads whole lines, as the terminal hands them over, and sends no typing
// indicators.
func cbreak(io.Reader, io.Writer) (restore func(), ok bool) { return nil, false }
