package main

import (
	"bytes"
	"math"
	"strconv"
)

// appendSend appends the JSON of a send to b:
//
//	{"cid":"RUN.SENDER.N","body":{"t":T,"n":N,"pad":"xx…"}}
//
// where T is the send time in Unix nanoseconds and the padding makes the
// body size bytes long (or as short as it gets when size is smaller).
func appendSend(b []byte, run string, sender, n int, t int64, size int) []byte {
	b = append(b, `{"cid":"`...)
	b = appendCID(b, run, sender, n)
	b = append(b, `","body":`...)
	start := len(b)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"n":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"pad":"`...)
	pad := size - (len(b) - start) - len(`"}`)
	for ; pad > 0; pad-- {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}

// appendCID appends the client message id RUN.SENDER.N.
func appendCID(b []byte, run string, sender, n int) []byte {
	b = append(b, run...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(n), 10)
}

// parseCID splits a cid written by appendCID for run; ok is false for any
// other cid.
func parseCID(cid []byte, run string) (sender, n int, ok bool) {
	if len(cid) <= len(run)+1 || string(cid[:len(run)]) != run || cid[len(run)] != '.' {
		return 0, 0, false
	}
	rest := cid[len(run)+1:]
	i := bytes.IndexByte(rest, '.')
	if i <= 0 {
		return 0, 0, false
	}
	s, ok1 := atoi(rest[:i])
	m, ok2 := atoi(rest[i+1:])
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return s, m, true
}

// atoi parses a non-negative decimal integer of at most 19 digits that fits
// an int64.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxInt64 {
		return 0, false
	}
	return int(n), true
}

// delivery holds the fields the load generator reads from an inbox payload:
// a Parley event ({"kind":"message","conv":…,"seq":…,"cid":…,"body":…}) or,
// in the raw scenario, the send payload itself (no kind). Byte slices point
// into the payload.
type delivery struct {
	kind []byte
	conv []byte
	cid  []byte
	code []byte
	seq  int64
	t    int64
	n    int64
	hasT bool
}

// parseDelivery reads b, a JSON object, into d without allocating. It walks
// the top-level keys in any order, and the "t" and "n" keys of an object
// "body"; everything else is skipped. ok is false for anything that is not
// a well-formed JSON object.
func parseDelivery(b []byte, d *delivery) bool {
	*d = delivery{}
	p := &scanner{b: b}
	return p.object(func(key []byte) bool {
		switch string(key) {
		case "kind":
			return p.str(&d.kind)
		case "conv":
			return p.str(&d.conv)
		case "cid":
			return p.str(&d.cid)
		case "code":
			return p.str(&d.code)
		case "seq":
			return p.int(&d.seq)
		case "body":
			p.ws()
			if p.i < len(p.b) && p.b[p.i] == '{' {
				return p.object(func(key []byte) bool {
					switch string(key) {
					case "t":
						d.hasT = true
						return p.int(&d.t)
					case "n":
						return p.int(&d.n)
					}
					return p.skip()
				})
			}
		}
		return p.skip()
	})
}

// scanner is a small JSON reader over a byte slice.
type scanner struct {
	b []byte
	i int
}

func (p *scanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object reads an object, calling member for each key with the scanner at
// the value, which member must consume.
func (p *scanner) object(member func(key []byte) bool) bool {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		var key []byte
		if !p.str(&key) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		if !member(key) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
			p.ws()
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// str reads a string; out gets its raw contents (escapes are not decoded,
// which is fine for the ids compared here).
func (p *scanner) str(out *[]byte) bool {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	start := p.i + 1
	for j := start; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			j++
		case '"':
			*out = p.b[start:j]
			p.i = j + 1
			return true
		}
	}
	return false
}

// int reads an integer; other numbers are skipped and leave out unchanged.
func (p *scanner) int(out *int64) bool {
	p.ws()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i = start
		return p.skip()
	}
	digits := p.b[start:p.i]
	neg := len(digits) > 0 && digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	v, ok := atoi(digits)
	if !ok {
		return false
	}
	if neg {
		v = -v
	}
	*out = int64(v)
	return true
}

// skip skips one value of any type.
func (p *scanner) skip() bool {
	p.ws()
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; c {
	case '"':
		var s []byte
		return p.str(&s)
	case '{', '[':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.i++
					return true
				}
			case '"':
				var s []byte
				if !p.str(&s) {
					return false
				}
				continue
			}
			p.i++
		}
		return false
	default:
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return p.i > start
			}
			p.i++
		}
		return p.i > start
	}
}
