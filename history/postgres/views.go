package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// History implements history.Store.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) ([]history.Message, history.ConvHead, error) {
	var out []history.Message
	var h history.ConvHead
	err := s.tx(ctx, func(tx pgx.Tx) error {
		h.Conv = q.Conv
		err := tx.QueryRow(ctx, `SELECT CASE WHEN c.kind = 'direct' THEN 1 ELSE m.joined_seq END,
			CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END
			FROM members m JOIN conversations c ON c.id = m.conv WHERE m.conv = $1 AND m.user_id = $2`, q.Conv, q.User).Scan(&h.First, &h.Last)
		if errors.Is(err, pgx.ErrNoRows) {
			return history.Errorf(history.ENOTMEMBER, "you are not a member of %s", q.Conv)
		}
		if err != nil {
			return err
		}
		var rows pgx.Rows
		if q.Before > 0 {
			rows, err = tx.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = $1 AND seq < $2 AND seq >= $3 AND seq <= $4 ORDER BY seq DESC LIMIT $5`,
				q.Conv, q.Before, h.First, h.Last, q.Limit)
		} else {
			rows, err = tx.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = $1 AND seq > $2 AND seq >= $3 AND seq <= $4 ORDER BY seq LIMIT $5`,
				q.Conv, q.After, h.First, h.Last, q.Limit)
		}
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Message, error) { return scanMessage(r) })
		return err
	})
	return out, h, err
}

// viewQuery selects ConversationViews of user $1; the caller appends the
// condition, order and limit.
const viewQuery = `SELECT c.id, c.kind, coalesce(g.name, ''),
	CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END,
	m.read_seq,
	(SELECT count(*) FROM messages x WHERE x.conv = c.id AND x.seq > m.read_seq
		AND x.seq <= CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END AND x.sender <> $1),
	c.updated_at,
	lm.conv, lm.seq, lm.id, coalesce(lm.cid, ''), lm.sender, lm.type, lm.body::text, lm.created_at
	FROM members m JOIN conversations c ON c.id = m.conv
	LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
	LEFT JOIN messages lm ON lm.conv = c.id AND lm.seq = CASE WHEN m.left_seq IS NULL THEN c.last_seq ELSE m.left_seq END
	WHERE m.user_id = $1 `

func scanViews(rows pgx.Rows, user string) ([]history.ConversationView, []time.Time, error) {
	defer rows.Close()
	var out []history.ConversationView
	var updated []time.Time
	for rows.Next() {
		var v history.ConversationView
		var at time.Time
		var lconv, lid, lcid, lfrom, ltype, lbody *string
		var lseq *int64
		var lts *time.Time
		if err := rows.Scan(&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq, &v.Unread, &at,
			&lconv, &lseq, &lid, &lcid, &lfrom, &ltype, &lbody, &lts); err != nil {
			return nil, nil, err
		}
		v.SetParties(user)
		if lconv != nil {
			v.LastMessage = &history.Message{Conv: *lconv, Seq: *lseq, ID: *lid, CID: *lcid, From: *lfrom, Type: *ltype, Body: []byte(*lbody), TS: lts.UTC()}
		}
		out = append(out, v)
		updated = append(updated, at)
	}
	return out, updated, rows.Err()
}

// Conversations implements history.Store. The cursor is the (updated_at, id)
// of the last conversation of the previous page.
func (s *Store) Conversations(ctx context.Context, user, cursor string, limit int) ([]history.ConversationView, string, error) {
	at, id := time.Now().Add(100*365*24*time.Hour), "\U0010FFFF"
	if cursor != "" {
		var err error
		if at, id, err = decodeCursor(cursor); err != nil {
			return nil, "", err
		}
	}
	rows, err := s.pool.Query(ctx, viewQuery+`AND (c.updated_at, c.id) < ($2, $3) ORDER BY c.updated_at DESC, c.id DESC LIMIT $4`, user, at, id, limit+1)
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
		next = encodeCursor(updated[limit-1], views[limit-1].ID)
	}
	return views, next, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + "|" + id))
}

func decodeCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if us, id, ok := strings.Cut(string(b), "|"); ok && history.ValidText(id) {
			if n, err := strconv.ParseInt(us, 10, 64); err == nil {
				return time.UnixMicro(n), id, nil
			}
		}
	}
	return time.Time{}, "", history.Errorf(history.EINVALID, "invalid cursor")
}

// Changes implements history.Store. A pass's Upto is the xmin of the
// snapshot that read its first page: every transaction below it had
// committed, and any later one has a changed_xid at or above it. The position
// At is updated_at in Unix microseconds.
func (s *Store) Changes(ctx context.Context, user, since string, limit int) ([]history.ConversationView, string, bool, error) {
	tok, err := history.ParseChangeToken(since, "x")
	if err != nil {
		return nil, "", false, err
	}
	if limit < 1 {
		return nil, "", false, history.Errorf(history.EINVALID, "limit must be at least 1")
	}
	at, id := time.Now().Add(100*365*24*time.Hour), "\U0010FFFF"
	if tok.Paging() {
		us, err := strconv.ParseInt(tok.At, 10, 64)
		if err != nil {
			return nil, "", false, history.Errorf(history.EINVALID, "invalid sync token")
		}
		at, id = time.UnixMicro(us), tok.ID
	}
	var views []history.ConversationView
	var updated []time.Time
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if !tok.Paging() {
			if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&tok.Upto); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, viewQuery+`AND (c.changed_xid >= $2 OR m.changed_xid >= $2) AND (c.updated_at, c.id) < ($3, $4)
			ORDER BY c.updated_at DESC, c.id DESC LIMIT $5`, user, tok.From, at, id, limit+1)
		if err != nil {
			return err
		}
		views, updated, err = scanViews(rows, user)
		return err
	})
	if err != nil {
		return nil, "", false, translate(err)
	}
	more := len(views) > limit
	var lastAt, lastID string
	if more {
		views = views[:limit]
		lastAt, lastID = strconv.FormatInt(updated[limit-1].UnixMicro(), 10), views[limit-1].ID
	}
	return views, history.NextChangeToken(tok, more, lastAt, lastID).Encode("x"), more, nil
}
