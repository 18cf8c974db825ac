package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/parley-im/parley/history"
)

// History implements history.Store.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) ([]history.Message, history.ConvHead, error) {
	h := history.ConvHead{Conv: q.Conv}
	var out []history.Message
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		r, err := scanMemberRow(tx.QueryRowContext(ctx, memberRows+`m.conv = ? AND m.user_id = ?`, q.Conv, q.User))
		if errors.Is(err, sql.ErrNoRows) {
			return history.NotMember(q.Conv)
		}
		if err != nil {
			return err
		}
		h = r.Head()
		lo, hi, desc := q.Range(h)
		query := `SELECT ` + messageColumns + ` FROM messages WHERE conv = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?`
		if desc {
			query = `SELECT ` + messageColumns + ` FROM messages WHERE conv = ? AND seq BETWEEN ? AND ? ORDER BY seq DESC LIMIT ?`
		}
		rows, err := tx.QueryContext(ctx, query, q.Conv, lo, hi, q.Limit)
		if out, err = collect(rows, err, scanMessage); err != nil {
			return err
		}
		return addReactions(ctx, tx, q.Conv, q.User, out)
	})
	if err != nil {
		return nil, h, err
	}
	return out, h, nil
}

// viewQuery selects ConversationViews of user ?1 below the position (?2, ?3)
// and their positions; the caller appends the condition and viewOrder, which
// takes at most ?4.
const viewQuery = `SELECT c.id, c.kind, coalesce(g.name, ''),
	coalesce(m.left_seq, c.last_seq),
	m.read_seq, ` + countsColumns + `,
	coalesce(m.muted_until, ''), m.archived, m.pinned,
	c.updated_at,
	` + lastMessageColumns + `
	FROM members m JOIN conversations c ON c.id = m.conv
	LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
	LEFT JOIN messages lm ON lm.conv = c.id AND lm.seq = coalesce(m.left_seq, c.last_seq)
	WHERE m.user_id = ?1 AND (c.updated_at < ?2 OR (c.updated_at = ?2 AND c.id < ?3)) `

const viewOrder = ` ORDER BY c.updated_at DESC, c.id DESC LIMIT ?4`

// top is above every position: the start of the first page.
const top = "\U0010FFFF"

// queryViews runs viewQuery with cond, whose arguments args follow ?4, and
// returns the page cut from limit+1 rows (see history.Page). The position's
// At is updated_at as stored.
func queryViews(ctx context.Context, q querier, user string, pos history.Position, limit int, cond string, args ...any) ([]history.ConversationView, history.Position, bool, error) {
	if pos.Top() {
		pos = history.Position{At: top, ID: top}
	}
	rows, err := q.QueryContext(ctx, viewQuery+cond+viewOrder, append([]any{user, pos.At, pos.ID, limit + 1}, args...)...)
	if err != nil {
		return nil, history.Position{}, false, err
	}
	defer rows.Close()
	var views []history.ConversationView
	var positions []string
	for rows.Next() {
		var v history.ConversationView
		var at, muted string
		var archived, pinned bool
		var lm lastMessage
		if err := rows.Scan(append([]any{&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq, &v.Unread, &v.Mentions, &muted, &archived, &pinned, &at}, lm.targets()...)...); err != nil {
			return nil, history.Position{}, false, err
		}
		var err error
		if v.Settings, err = settings(muted, archived, pinned); err != nil {
			return nil, history.Position{}, false, err
		}
		if v.LastMessage, err = lm.message(); err != nil {
			return nil, history.Position{}, false, err
		}
		views = append(views, v)
		positions = append(positions, at)
	}
	if err := rows.Err(); err != nil {
		return nil, history.Position{}, false, err
	}
	page, next, more := history.Page(user, views, positions, limit)
	return page, next, more, nil
}

// Changes implements history.Store. SQLite commits one writer at a time, so
// the change counter read in the snapshot of a pass's first page covers every
// committed change, and a pass's Upto is one past it.
func (s *Store) Changes(ctx context.Context, user, since string, limit int) ([]history.ConversationView, string, bool, error) {
	tok, err := history.ParseChanges(since, "s", limit)
	if err != nil {
		return nil, "", false, err
	}
	var views []history.ConversationView
	var next history.Position
	var more bool
	err = s.readTx(ctx, func(tx *sql.Tx) error {
		if !tok.Paging() {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT n FROM changes`).Scan(&n); err != nil {
				return err
			}
			tok.Upto = n + 1
		}
		var err error
		views, next, more, err = queryViews(ctx, tx, user, tok.Position(), limit, `AND (c.changed_xid >= ?5 OR m.changed_xid >= ?5)`, tok.From)
		return err
	})
	if err != nil {
		return nil, "", false, err
	}
	return views, tok.Next("s", next, more), more, nil
}

// Conversations implements history.Store. The cursor is the position of the
// last conversation of the previous page.
func (s *Store) Conversations(ctx context.Context, user, cursor string, limit int) ([]history.ConversationView, string, error) {
	pos, err := history.ParseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	views, next, more, err := queryViews(ctx, s.read, user, pos, limit, "")
	if err != nil {
		return nil, "", translate(err)
	}
	return views, history.NextCursor(next, more), nil
}
