package history

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Search limits.
const (
	// MaxSearchTerms bounds the words of a search query.
	MaxSearchTerms = 8
	// MaxSearchTermLen bounds one word, in bytes (longer words are cut).
	MaxSearchTermLen = 64
)

// SearchQuery asks for the messages User may see whose text matches every
// word of Terms (the last one as a prefix), newest first.
type SearchQuery struct {
	User  string
	Terms []string // see SearchTerms
	// Conv and From, when set, restrict the results to one conversation
	// and one sender.
	Conv string
	From string
	// After and Before, when not zero, bound the messages' times
	// (exclusive).
	After, Before time.Time
	Cursor        string // "" for the first page; see SearchCursor
	Limit         int
}

// SearchTerms splits a search query into its words: runs of letters and
// digits, lowercased, each cut to MaxSearchTermLen bytes, at most
// MaxSearchTerms of them. EINVALID when there is no word or too many.
func SearchTerms(q string) ([]string, error) {
	words := strings.FieldsFunc(strings.ToLower(q), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if len(words) == 0 {
		return nil, Errorf(EINVALID, "q must hold at least one word (letters or digits)")
	}
	if len(words) > MaxSearchTerms {
		return nil, Errorf(EINVALID, "q holds more than %d words", MaxSearchTerms)
	}
	for i, w := range words {
		if len(w) > MaxSearchTermLen {
			cut := MaxSearchTermLen
			for !utf8.RuneStart(w[cut]) {
				cut--
			}
			words[i] = w[:cut]
		}
	}
	return words, nil
}

// SearchText returns the text a message body is searched by: its string
// values (not its keys, numbers or booleans), in order, separated by
// newlines, with U+0000 dropped. A body that is not JSON has none.
func SearchText(body json.RawMessage) string {
	var b strings.Builder
	dec := json.NewDecoder(bytes.NewReader(body))
	// Keys and values alternate inside objects: key is set in an object's
	// frame when its next token is a key.
	type frame struct{ object, key bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		top := len(stack) - 1
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{object: true, key: true})
			case '[':
				stack = append(stack, frame{})
			default:
				stack = stack[:top]
				if top > 0 && stack[top-1].object {
					stack[top-1].key = true // the value ended
				}
			}
			continue
		case string:
			if top < 0 || !stack[top].object || !stack[top].key {
				if b.Len() > 0 {
					b.WriteByte('\n')
				}
				b.WriteString(strings.ReplaceAll(v, "\x00", ""))
			}
		}
		if top >= 0 && stack[top].object {
			stack[top].key = !stack[top].key
		}
	}
	return b.String()
}

// FTSQuery returns terms as an SQLite FTS5 query: every word, the last as
// a prefix. Words hold letters and digits only (SearchTerms), quoted.
func FTSQuery(terms []string) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = `"` + t + `"`
	}
	parts[len(parts)-1] += "*"
	return strings.Join(parts, " ")
}

// TSQuery returns terms as a PostgreSQL tsquery text for to_tsquery: every
// word, the last as a prefix (:*). Words hold letters and digits only
// (SearchTerms), quoted.
func TSQuery(terms []string) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = "'" + t + "'"
	}
	parts[len(parts)-1] += ":*"
	return strings.Join(parts, " & ")
}

// SearchPosition is where a page of search results ends: its last
// message's time (Unix microseconds), conversation and seq. Results are
// ordered by descending (TS, Conv, Seq).
type SearchPosition struct {
	TS   int64
	Conv string
	Seq  int64
}

// Cursor encodes p for SearchQuery.Cursor.
func (p SearchPosition) Cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d|%d|%s", p.TS, p.Seq, p.Conv)))
}

// ParseSearchCursor decodes a SearchPosition.Cursor; "" is the top (ok
// false). EINVALID for anything else.
func ParseSearchCursor(s string) (p SearchPosition, ok bool, err error) {
	if s == "" {
		return p, false, nil
	}
	b, derr := base64.RawURLEncoding.DecodeString(s)
	parts := strings.SplitN(string(b), "|", 3)
	if derr == nil && len(parts) == 3 {
		ts, e1 := strconv.ParseInt(parts[0], 10, 64)
		seq, e2 := strconv.ParseInt(parts[1], 10, 64)
		if _, _, _, valid := ParseConvID(parts[2]); e1 == nil && e2 == nil && valid {
			return SearchPosition{TS: ts, Conv: parts[2], Seq: seq}, true, nil
		}
	}
	return p, false, Errorf(EINVALID, "invalid cursor")
}

// SearchPage cuts msgs, read with a limit of limit+1 in result order, to a
// page and returns the cursor of the next page ("" when none remain).
func SearchPage(msgs []Message, limit int) ([]Message, string) {
	if len(msgs) <= limit {
		return msgs, ""
	}
	msgs = msgs[:limit]
	last := msgs[limit-1]
	return msgs, SearchPosition{TS: last.TS.UnixMicro(), Conv: last.Conv, Seq: last.Seq}.Cursor()
}

// Highlight is a match within a snippet: the byte offsets Start (inclusive)
// and End (exclusive).
type Highlight struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// snippetRadius is how many runes of context a snippet keeps on each side
// of its first match.
const snippetRadius = 60

// Snippet returns an excerpt of text around its first match of terms (the
// last as a prefix) and the matches within it; words match
// case-insensitively at word starts. A text without a literal match (a
// stemmed one) gives its beginning without highlights.
func Snippet(text string, terms []string) (string, []Highlight) {
	type match struct{ start, end int }
	var matches []match
	// Walk the words of the text; lowering may change byte lengths, so
	// match on each word lowered on its own.
	i := 0
	for i < len(text) {
		r, n := utf8.DecodeRuneInString(text[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			i += n
			continue
		}
		j := i
		for j < len(text) {
			r, n := utf8.DecodeRuneInString(text[j:])
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				break
			}
			j += n
		}
		word := strings.ToLower(text[i:j])
		for k, t := range terms {
			if word == t || (k == len(terms)-1 && strings.HasPrefix(word, t)) {
				matches = append(matches, match{i, j})
				break
			}
		}
		i = j
	}
	start, from := 0, 0
	if len(matches) > 0 {
		start, from = backRunes(text, matches[0].start, snippetRadius), matches[0].end
	}
	end := forwardRunes(text, from, snippetRadius*2)
	var hs []Highlight
	for _, m := range matches {
		if m.start >= start && m.end <= end {
			hs = append(hs, Highlight{m.start - start, m.end - start})
		}
	}
	return text[start:end], hs
}

// backRunes returns the offset n runes before i in s (0 at most).
func backRunes(s string, i, n int) int {
	for ; n > 0 && i > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return i
}

// forwardRunes returns the offset n runes after i in s (len(s) at most).
func forwardRunes(s string, i, n int) int {
	for ; n > 0 && i < len(s); n-- {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return i
}
