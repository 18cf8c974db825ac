package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

var _ history.Privacy = (*Store)(nil)

// searchQuery selects the messages of user $1 matching tsquery $2 in the
// part of each conversation the user may see (members see their
// conversations from when they joined and from the first kept message,
// former members up to their removal), with the optional filters, newest
// first.
const searchQuery = `SELECT ` + messageColumns + ` FROM (
	SELECT m.* FROM members mb
	JOIN conversations c ON c.id = mb.conv
	JOIN messages m ON m.conv = mb.conv
		AND m.seq >= greatest(mb.joined_seq, c.expired_before) AND m.seq <= coalesce(mb.left_seq, c.last_seq)
	WHERE mb.user_id = $1
		AND m.search @@ to_tsquery((SELECT language FROM search_config)::regconfig, $2)
		AND ($3 = '' OR mb.conv = $3) AND ($4 = '' OR m.sender = $4)
		AND ($5::timestamptz IS NULL OR m.created_at > $5) AND ($6::timestamptz IS NULL OR m.created_at < $6)
		AND (NOT $7 OR (m.created_at, m.conv, m.seq) < ($8, $9, $10))
	) x ORDER BY created_at DESC, conv DESC, seq DESC LIMIT $11`

// Search implements history.Privacy.
func (s *Store) Search(ctx context.Context, q history.SearchQuery) ([]history.Message, string, error) {
	pos, paging, err := history.ParseSearchCursor(q.Cursor)
	if err != nil {
		return nil, "", err
	}
	if len(q.Terms) == 0 {
		return nil, "", history.Errorf(history.EINVALID, "no words to search for")
	}
	rows, err := s.pool.Query(ctx, searchQuery, q.User, history.TSQuery(q.Terms), q.Conv, q.From,
		optTime(q.After), optTime(q.Before), paging, time.UnixMicro(pos.TS), pos.Conv, pos.Seq, q.Limit+1)
	if err != nil {
		return nil, "", translate(err)
	}
	msgs, err := pgx.CollectRows(rows, collectMessage)
	if err != nil {
		return nil, "", translate(err)
	}
	page, next := history.SearchPage(msgs, q.Limit)
	return page, next, nil
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// SetSearchLanguage sets the text search configuration that indexes and
// queries use (PARLEY_SEARCH_LANGUAGE: "simple", "english", ...). When it
// changes, every message is indexed again, in this call. EINVALID for a
// configuration the database does not have.
func (s *Store) SetSearchLanguage(ctx context.Context, lang string) error {
	if lang == "" {
		lang = "simple"
	}
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = $1)`, lang).Scan(&ok); err != nil {
		return translate(err)
	}
	if !ok {
		return history.Errorf(history.EINVALID, "no text search configuration %q in the database (see \\dF in psql)", lang)
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE search_config SET language = $1 WHERE language <> $1`, lang)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE messages SET body = body WHERE NOT event AND NOT deleted`); err != nil {
			return fmt.Errorf("reindex messages: %w", err)
		}
		return nil
	})
}
