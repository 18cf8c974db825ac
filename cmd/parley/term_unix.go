//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// cbreak puts the terminal of in in cbreak mode when in and out are both
// a terminal: input arrives key by key, not echoed (chatInput echoes and
// edits it), while Ctrl-C and Ctrl-Z keep working and output is unchanged.
// It returns the function that restores the terminal, or false when in or
// out is not a terminal.
func cbreak(in io.Reader, out io.Writer) (restore func(), ok bool) {
	fi, ok := in.(*os.File)
	if !ok {
		return nil, false
	}
	fo, ok := out.(*os.File)
	if !ok {
		return nil, false
	}
	fd := int(fi.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return nil, false
	}
	if _, err := unix.IoctlGetTermios(int(fo.Fd()), ioctlGetTermios); err != nil {
		return nil, false
	}
	t := *old
	t.Lflag &^= unix.ICANON | unix.ECHO
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &t); err != nil {
		return nil, false
	}
	return func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, old) }, true
}
