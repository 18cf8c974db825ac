package postgres

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// History implements history.Store.
func (s *Store) History(ctx context.Context, q history.HistoryQuery) ([]history.Message, history.ConvHead, error) {
	var out []history.Message
	h := history.ConvHead{Conv: q.Conv}
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, memberRows+`m.conv = $1 AND m.user_id = $2`, q.Conv, q.User)
		if err != nil {
			return err
		}
		row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByPos[history.MemberRow])
		if errors.Is(err, pgx.ErrNoRows) {
			return history.NotMember(q.Conv)
		}
		if err != nil {
			return err
		}
		h = row.Head()
		lo, hi, desc := q.Range(h)
		order := `ORDER BY seq`
		if desc {
			order = `ORDER BY seq DESC`
		}
		rows, err = tx.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = $1 AND seq >= $2 AND seq <= $3 `+order+` LIMIT $4`,
			q.Conv, lo, hi, q.Limit)
		if err != nil {
			return err
		}
		if out, err = pgx.CollectRows(rows, collectMessage); err != nil {
			return err
		}
		return addReactions(ctx, tx, q.Conv, q.User, out)
	})
	return out, h, translate(err)
}

// viewQuery selects ConversationViews of user $1 and their positions; the
// caller appends the condition, order and limit.
const viewQuery = `SELECT c.id, c.kind, coalesce(g.name, ''),
	coalesce(m.left_seq, c.last_seq),
	m.read_seq, ` + countsColumn + `, m.muted_until, m.archived, m.pinned,
	c.updated_at,
	` + lastMessageColumns + `
	FROM members m JOIN conversations c ON c.id = m.conv
	LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
	LEFT JOIN messages lm ON lm.conv = c.id AND lm.seq = coalesce(m.left_seq, c.last_seq)
	WHERE m.user_id = $1 `

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// queryViews runs viewQuery with cond, whose arguments args follow the user
// ($1), the position ($2, $3: the page starts below it) and the limit ($4),
// and returns the page cut from limit+1 rows (see history.Page). The
// position's At is updated_at in Unix microseconds.
func queryViews(ctx context.Context, q querier, user string, pos history.Position, limit int, cond string, args ...any) ([]history.ConversationView, history.Position, bool, error) {
	at, id := time.Now().Add(100*365*24*time.Hour), "\U0010FFFF"
	if !pos.Top() {
		us, err := strconv.ParseInt(pos.At, 10, 64)
		if err != nil {
			return nil, history.Position{}, false, errBadPosition
		}
		at, id = time.UnixMicro(us), pos.ID
	}
	rows, err := q.Query(ctx, viewQuery+cond+` AND (c.updated_at, c.id) < ($2, $3) ORDER BY c.updated_at DESC, c.id DESC LIMIT $4`,
		append([]any{user, at, id, limit + 1}, args...)...)
	if err != nil {
		return nil, history.Position{}, false, err
	}
	var views []history.ConversationView
	var positions []string
	var v history.ConversationView
	var updated time.Time
	var counts []int64
	var muted *time.Time
	var archived, pinned bool
	var lm lastMessage
	_, err = pgx.ForEachRow(rows, append([]any{&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq, &counts, &muted, &archived, &pinned, &updated},
		lm.targets()...), func() error {
		v.Unread, v.Mentions = counts[0], counts[1]
		v.Settings = settings(muted, archived, pinned)
		v.LastMessage = lm.message()
		views = append(views, v)
		positions = append(positions, strconv.FormatInt(updated.UnixMicro(), 10))
		return nil
	})
	if err != nil {
		return nil, history.Position{}, false, err
	}
	page, next, more := history.Page(user, views, positions, limit)
	return page, next, more, nil
}

// errBadPosition marks a position whose At is not a number; the caller
// reports its own EINVALID.
var errBadPosition = errors.New("postgres: position is not in microseconds")

// Conversations implements history.Store. The cursor is the position of the
// last conversation of the previous page.
func (s *Store) Conversations(ctx context.Context, user, cursor string, limit int) ([]history.ConversationView, string, error) {
	pos, err := history.ParseCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	views, next, more, err := queryViews(ctx, s.pool, user, pos, limit, "")
	if errors.Is(err, errBadPosition) {
		return nil, "", history.Errorf(history.EINVALID, "invalid cursor")
	}
	if err != nil {
		return nil, "", translate(err)
	}
	return views, history.NextCursor(next, more), nil
}

// Changes implements history.Store. A pass's Upto is the xmin of the
// snapshot that read its first page: every transaction below it had
// committed, and any later one has a changed_xid at or above it.
func (s *Store) Changes(ctx context.Context, user, since string, limit int) ([]history.ConversationView, string, bool, error) {
	tok, err := history.ParseChanges(since, "x", limit)
	if err != nil {
		return nil, "", false, err
	}
	var views []history.ConversationView
	var next history.Position
	var more bool
	err = s.snapshot(ctx, func(tx pgx.Tx) error {
		if !tok.Paging() {
			if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&tok.Upto); err != nil {
				return err
			}
		}
		views, next, more, err = queryViews(ctx, tx, user, tok.Position(), limit, `AND (c.changed_xid >= $5 OR m.changed_xid >= $5)`, tok.From)
		return err
	})
	if errors.Is(err, errBadPosition) {
		return nil, "", false, history.Errorf(history.EINVALID, "invalid sync token")
	}
	if err != nil {
		return nil, "", false, translate(err)
	}
	return views, tok.Next("x", next, more), more, nil
}
