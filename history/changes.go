package history

import (
	"encoding/base64"
	"strconv"
	"strings"
)

// ChangeToken is what a sync token carries, the same for both stores; only
// the meaning of the positions differs (a transaction id horizon in
// PostgreSQL, a change counter in SQLite).
//
// A pass over the changes since From may take several pages. Its first page
// reads Upto, the position from which the next pass starts, and each page
// ends at a conversation (At, ID): its sort key, as the store writes it, and
// its id. Conversations are listed most recently active first, so one that
// changes during the pass may move ahead of the position and be skipped; its
// change is at or after Upto, so the next pass reports it.
type ChangeToken struct {
	From int64
	// Upto is 0 for a token that starts a pass.
	Upto int64
	At   string
	ID   string
}

// Paging reports whether t continues a pass.
func (t ChangeToken) Paging() bool { return t.ID != "" }

// Encode returns t as an opaque token: prefix and From for a token that
// starts a pass (the format tokens had before paging), followed by Upto and
// the position while paging.
func (t ChangeToken) Encode(prefix string) string {
	s := prefix + strconv.FormatInt(t.From, 10)
	if !t.Paging() {
		return s
	}
	return s + "." + strconv.FormatInt(t.Upto, 10) + "." + base64.RawURLEncoding.EncodeToString([]byte(t.At+"|"+t.ID))
}

// ParseChangeToken parses a token made by Encode with the same prefix; ""
// starts from the beginning. EINVALID for anything else.
func ParseChangeToken(s, prefix string) (ChangeToken, error) {
	if s == "" {
		return ChangeToken{}, nil
	}
	bad := Errorf(EINVALID, "invalid sync token")
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return ChangeToken{}, bad
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 1 && len(parts) != 3 {
		return ChangeToken{}, bad
	}
	var t ChangeToken
	var err error
	if t.From, err = strconv.ParseInt(parts[0], 10, 64); err != nil || t.From < 0 {
		return ChangeToken{}, bad
	}
	if len(parts) == 1 {
		return t, nil
	}
	if t.Upto, err = strconv.ParseInt(parts[1], 10, 64); err != nil || t.Upto < 0 {
		return ChangeToken{}, bad
	}
	pos, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return ChangeToken{}, bad
	}
	t.At, t.ID, ok = strings.Cut(string(pos), "|")
	if !ok || t.ID == "" {
		return ChangeToken{}, bad
	}
	return t, nil
}

// NextChangeToken returns the token that follows a page of a pass: the
// position of the page's last conversation when more remain, else the token
// that starts the next pass at t.Upto.
func NextChangeToken(t ChangeToken, more bool, at, id string) ChangeToken {
	if more {
		return ChangeToken{From: t.From, Upto: t.Upto, At: at, ID: id}
	}
	return ChangeToken{From: t.Upto}
}

// ParseChanges starts Changes: it parses the token since (ParseChangeToken
// with prefix) and checks limit. EINVALID for a malformed token or a limit
// below 1.
func ParseChanges(since, prefix string, limit int) (ChangeToken, error) {
	t, err := ParseChangeToken(since, prefix)
	if err != nil {
		return ChangeToken{}, err
	}
	if limit < 1 {
		return ChangeToken{}, Errorf(EINVALID, "limit must be at least 1")
	}
	return t, nil
}

// Position returns the position after which a paging token continues its
// pass, or the zero Position for a token that starts one.
func (t ChangeToken) Position() Position { return Position{At: t.At, ID: t.ID} }

// Next returns the token, encoded with prefix, that follows a page of the
// pass (see NextChangeToken and Page).
func (t ChangeToken) Next(prefix string, next Position, more bool) string {
	return NextChangeToken(t, more, next.At, next.ID).Encode(prefix)
}
