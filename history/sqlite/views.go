package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/parley-im/parley/history"
)

// History implements history.Store.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) ([]history.Message, history.ConvHead, error) {
	h := history.ConvHead{Conv: q.Conv}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, h, translate(err)
	}
	defer tx.Rollback()
	err = tx.QueryRowContext(ctx, `SELECT CASE WHEN c.kind = 'direct' THEN 1 ELSE m.joined_seq END,
		CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END
		FROM members m JOIN conversations c ON c.id = m.conv WHERE m.conv = ? AND m.user_id = ?`, q.Conv, q.User).Scan(&h.First, &h.Last)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, h, history.Errorf(history.ENOTMEMBER, "you are not a member of %s", q.Conv)
	}
	if err != nil {
		return nil, h, translate(err)
	}
	var rows *sql.Rows
	if q.Before > 0 {
		rows, err = tx.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND seq < ? AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?`,
			q.Conv, q.Before, h.First, h.Last, q.Limit)
	} else {
		rows, err = tx.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND seq > ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`,
			q.Conv, q.After, h.First, h.Last, q.Limit)
	}
	if err != nil {
		return nil, h, translate(err)
	}
	defer rows.Close()
	var out []history.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, h, translate(err)
		}
		out = append(out, m)
	}
	return out, h, translate(rows.Err())
}

// viewQuery selects ConversationViews of user ?1; the caller appends the
// condition, order and limit.
const viewQuery = `SELECT c.id, c.kind, coalesce(g.name, ''),
	CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END,
	m.read_seq,
	(SELECT count(*) FROM messages x WHERE x.conv = c.id AND x.seq > m.read_seq
		AND x.seq <= CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END AND x.sender <> ?1),
	c.updated_at,
	lm.conv, lm.seq, lm.id, coalesce(lm.cid, ''), lm.sender, lm.type, lm.body, lm.created_at
	FROM members m JOIN conversations c ON c.id = m.conv
	LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
	LEFT JOIN messages lm ON lm.conv = c.id AND lm.seq = CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END
	WHERE m.user_id = ?1 `

func scanViews(rows *sql.Rows, user string) ([]history.ConversationView, []string, error) {
	defer rows.Close()
	var out []history.ConversationView
	var updated []string
	for rows.Next() {
		var v history.ConversationView
		var at string
		var lconv, lid, lcid, lfrom, ltype, lbody, lts sql.NullString
		var lseq sql.NullInt64
		if err := rows.Scan(&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq, &v.Unread, &at,
			&lconv, &lseq, &lid, &lcid, &lfrom, &ltype, &lbody, &lts); err != nil {
			return nil, nil, err
		}
		v.SetParties(user)
		if lconv.Valid {
			ts, _ := time.Parse(tsLayout, lts.String)
			v.LastMessage = &history.Message{Conv: lconv.String, Seq: lseq.Int64, ID: lid.String, CID: lcid.String,
				From: lfrom.String, Type: ltype.String, Body: []byte(lbody.String), TS: ts.UTC()}
		}
		out = append(out, v)
		updated = append(updated, at)
	}
	return out, updated, rows.Err()
}

// Conversations implements history.Store. The cursor is the (updated_at, id)
// of the last conversation of the previous page.
func (s *Store) Conversations(ctx context.Context, user, cursor string, limit int) ([]history.ConversationView, string, error) {
	at, id := "\U0010FFFF", "\U0010FFFF"
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		var ok bool
		if err == nil {
			at, id, ok = strings.Cut(string(b), "|")
		}
		if !ok || !history.ValidText(at) || !history.ValidText(id) {
			return nil, "", history.Errorf(history.EINVALID, "invalid cursor")
		}
	}
	rows, err := s.read.QueryContext(ctx, viewQuery+`AND (c.updated_at < ?2 OR (c.updated_at = ?2 AND c.id < ?3)) ORDER BY c.updated_at DESC, c.id DESC LIMIT ?4`, user, at, id, limit+1)
	if err != nil {
		return nil, "", translate(err)
	}
	views, updated, err := scanViews(rows, user)
	if err != nil {
		return nil, "", translate(err)
	}
	next := ""
	if len(views) > limit {
		views = views[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(updated[limit-1] + "|" + views[limit-1].ID))
	}
	return views, next, nil
}

// Changes implements history.Store. SQLite commits one writer at a time, so
// the change counter read in the snapshot of a pass's first page covers every
// committed change, and a pass's Upto is one past it. The position At is
// updated_at as stored.
func (s *Store) Changes(ctx context.Context, user, since string, limit int) ([]history.ConversationView, string, bool, error) {
	tok, err := history.ParseChangeToken(since, "s")
	if err != nil {
		return nil, "", false, err
	}
	if limit < 1 {
		return nil, "", false, history.Errorf(history.EINVALID, "limit must be at least 1")
	}
	at, id := "\U0010FFFF", "\U0010FFFF"
	if tok.Paging() {
		at, id = tok.At, tok.ID
	}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", false, translate(err)
	}
	defer tx.Rollback()
	if !tok.Paging() {
		var n int64
		if err := tx.QueryRowContext(ctx, `SELECT n FROM changes`).Scan(&n); err != nil {
			return nil, "", false, translate(err)
		}
		tok.Upto = n + 1
	}
	rows, err := tx.QueryContext(ctx, viewQuery+`AND (c.changed_xid >= ?2 OR m.changed_xid >= ?2)
		AND (c.updated_at < ?3 OR (c.updated_at = ?3 AND c.id < ?4)) ORDER BY c.updated_at DESC, c.id DESC LIMIT ?5`, user, tok.From, at, id, limit+1)
	if err != nil {
		return nil, "", false, translate(err)
	}
	views, updated, err := scanViews(rows, user)
	if err != nil {
		return nil, "", false, translate(err)
	}
	more := len(views) > limit
	var lastAt, lastID string
	if more {
		views = views[:limit]
		lastAt, lastID = updated[limit-1], views[limit-1].ID
	}
	return views, history.NextChangeToken(tok, more, lastAt, lastID).Encode("s"), more, nil
}
