package main

import (
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// chatInput turns what the user types into lines, and tells when a line is
// being typed, for typing indicators. On a terminal (term), which chat puts
// in cbreak mode, it also echoes and edits the line being typed
// (Backspace, Ctrl-U, Ctrl-D on an empty line leaves) and keeps it below
// what println prints. Otherwise (a pipe, a file) it splits the input into
// lines as they come. It is safe for concurrent use.
type chatInput struct {
	term bool
	echo io.Writer // the terminal, when term

	mu   sync.Mutex
	line []byte // the line being typed
	esc  int    // escape sequence being skipped: 0 none, 1 after ESC, 2 in CSI
}

// Control keys on a terminal in cbreak mode.
const (
	keyEOF       = 0x04 // Ctrl-D
	keyBackspace = 0x08 // Ctrl-H
	keyKillLine  = 0x15 // Ctrl-U
	keyEscape    = 0x1b
	keyDelete    = 0x7f // what Backspace sends on most terminals
)

// feed takes bytes read from the input. It returns the lines completed,
// whether this input added to a line still being typed, and, on a
// terminal, whether the user asked to leave (Ctrl-D on an empty line).
func (in *chatInput) feed(b []byte) (lines []string, typing, eof bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.term {
		for _, ch := range b {
			if ch == '\n' {
				lines = append(lines, string(trimCR(in.line)))
				in.line = in.line[:0]
				typing = false
				continue
			}
			in.line = append(in.line, ch)
			typing = true
		}
		return lines, typing, false
	}
	var echo []byte
	for _, ch := range b {
		switch {
		case in.esc == 1:
			// ESC [ starts a CSI sequence (arrow keys, ...); ESC and any
			// other byte is a two-byte sequence (Alt+key).
			in.esc = 0
			if ch == '[' {
				in.esc = 2
			}
		case in.esc == 2:
			if ch >= 0x40 && ch <= 0x7e {
				in.esc = 0
			}
		case ch == keyEscape:
			in.esc = 1
		case ch == '\n' || ch == '\r':
			lines = append(lines, string(in.line))
			in.line = in.line[:0]
			echo = append(echo, '\n')
			typing = false
		case ch == keyEOF:
			if len(in.line) == 0 {
				in.write(echo)
				return lines, false, true
			}
		case ch == keyBackspace || ch == keyDelete:
			if len(in.line) > 0 {
				_, size := utf8.DecodeLastRune(in.line)
				in.line = in.line[:len(in.line)-size]
				echo = append(echo, "\b \b"...)
			}
		case ch == keyKillLine:
			in.line = in.line[:0]
			echo = append(echo, "\r\x1b[K"...)
		case ch < 0x20:
			// Other control keys do nothing.
		default:
			in.line = append(in.line, ch)
			echo = append(echo, ch)
			typing = true
		}
	}
	in.write(echo)
	return lines, typing && len(in.line) > 0, false
}

// rest returns the line left unfinished when the input ends, and forgets
// it.
func (in *chatInput) rest() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	l := string(trimCR(in.line))
	in.line = in.line[:0]
	return l
}

// println prints s and a newline to w. On a terminal it first clears the
// line being typed and shows it again after s.
func (in *chatInput) println(w io.Writer, s string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.term && len(in.line) > 0 {
		in.write([]byte("\r\x1b[K"))
		fmt.Fprintln(w, s)
		in.write(in.line)
		return
	}
	fmt.Fprintln(w, s)
}

// write echoes b to the terminal; in.mu is held.
func (in *chatInput) write(b []byte) {
	if in.term && len(b) > 0 {
		_, _ = in.echo.Write(b)
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}
