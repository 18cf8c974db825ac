package wire

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/parley-im/parley/history"
)

// MessageDelivery returns the inbox payload of a stored message: the JSON of
// StoredDelivery(m), byte for byte what encoding/json writes for it (HTML
// characters escaped, the body compacted), without reflection and in one
// allocation. A body that is not valid JSON, which encoding/json refuses,
// gives nil.
func MessageDelivery(m history.Message) []byte {
	n := 128 + len(m.Conv) + len(m.ID) + len(m.CID) + len(m.From) + len(m.Type) + len(m.Body) + len(m.Emoji)
	for _, u := range m.Mentions {
		n += len(u) + 3
	}
	return AppendMessageDelivery(make([]byte, 0, n), m)
}

// AppendMessageDelivery appends MessageDelivery(m) to dst. When the body is
// not valid JSON it returns nil.
func AppendMessageDelivery(dst []byte, m history.Message) []byte {
	dst = append(dst, `{"kind":"message","conv":`...)
	dst = appendJSONString(dst, m.Conv)
	dst = appendIntField(dst, `,"seq":`, m.Seq)
	dst = appendStringField(dst, `,"id":`, m.ID)
	dst = appendStringField(dst, `,"cid":`, m.CID)
	dst = append(dst, `,"from":`...)
	dst = appendJSONString(dst, m.From)
	dst = append(dst, `,"ts":"`...)
	dst = m.TS.UTC().AppendFormat(dst, TSLayout)
	dst = append(dst, `","type":`...)
	dst = appendJSONString(dst, m.Type)
	dst = append(dst, `,"body":`...)
	var ok bool
	if dst, ok = appendCompactJSON(dst, m.Body); !ok {
		return nil
	}
	dst = appendIntField(dst, `,"reply_to":`, m.ReplyTo)
	if len(m.Mentions) > 0 {
		dst = append(dst, `,"mentions":[`...)
		for i, u := range m.Mentions {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, u)
		}
		dst = append(dst, ']')
	}
	dst = appendIntField(dst, `,"target":`, m.Target)
	dst = appendStringField(dst, `,"emoji":`, m.Emoji)
	if !m.EditedAt.IsZero() {
		dst = append(dst, `,"edited_at":"`...)
		dst = m.EditedAt.UTC().AppendFormat(dst, TSLayout)
		dst = append(dst, '"')
	}
	if m.Deleted {
		dst = append(dst, `,"deleted":true`...)
	}
	if len(m.Attachments) > 0 {
		// Rare, and off the hot path: encoding/json does these.
		b, err := json.Marshal(m.Attachments)
		if err != nil {
			return nil
		}
		dst = append(dst, `,"attachments":`...)
		dst = append(dst, b...)
	}
	return append(dst, '}')
}

// appendIntField appends field, such as `,"seq":`, and n, unless n is 0: a
// field that encoding/json omits when empty.
func appendIntField(dst []byte, field string, n int64) []byte {
	if n == 0 {
		return dst
	}
	return strconv.AppendInt(append(dst, field...), n, 10)
}

// appendStringField appends field, such as `,"id":`, and s as a JSON
// string, unless s is "": a field that encoding/json omits when empty.
func appendStringField(dst []byte, field, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, field...), s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as encoding/json writes a string with HTML
// escaping: quotes, backslashes and control characters escaped (\b \f \n \r
// \t by name), <, > and & as \u003c \u003e \u0026, U+2028 and U+2029
// escaped, and each byte of invalid UTF-8 as \ufffd.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendCompactJSON appends raw as encoding/json writes a json.RawMessage
// field: null when nil, otherwise without insignificant white space and with
// <, >, &, U+2028 and U+2029 escaped. It reports false, appending nothing,
// when raw is not valid JSON.
func appendCompactJSON(dst, raw []byte) ([]byte, bool) {
	if raw == nil {
		return append(dst, "null"...), true
	}
	if !json.Valid(raw) {
		return dst, false
	}
	start := 0
	inString, escaped := false, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			case c == '<' || c == '>' || c == '&':
				dst = append(dst, raw[start:i]...)
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
				start = i + 1
			case c == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && raw[i+2]&^1 == 0xA8:
				dst = append(dst, raw[start:i]...)
				dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[raw[i+2]&0xF])
				i += 2
				start = i + 1
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			dst = append(dst, raw[start:i]...)
			start = i + 1
		}
	}
	return append(dst, raw[start:]...), true
}
