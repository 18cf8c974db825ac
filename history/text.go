package history

import (
	"strings"
	"unicode/utf8"
)

// ValidText reports whether s can be stored in a text column of every store:
// valid UTF-8 without U+0000. PostgreSQL's text type refuses both (SQLSTATE
// 22021) where SQLite would store them, so callers check user input with
// ValidText to refuse it the same way on every store.
func ValidText(s string) bool {
	return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s)
}
