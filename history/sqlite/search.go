package sqlite

import (
	"context"
	"time"

	"github.com/parley-im/parley/history"
)

var _ history.Privacy = (*Store)(nil)

// searchQuery selects the messages of user ?1 matching FTS5 query ?2 in the
// part of each conversation the user may see (members see their
// conversations from when they joined and from the first kept message,
// former members up to their removal), with the optional filters, newest
// first.
const searchQuery = `SELECT ` + messageColumns + ` FROM (
	SELECT m.* FROM message_search s
	JOIN messages m ON m.rowid = s.rowid
	JOIN members mb ON mb.conv = m.conv AND mb.user_id = ?1
	JOIN conversations c ON c.id = m.conv
	WHERE message_search MATCH ?2
		AND m.seq >= max(mb.joined_seq, c.expired_before) AND m.seq <= coalesce(mb.left_seq, c.last_seq)
		AND (?3 = '' OR m.conv = ?3) AND (?4 = '' OR m.sender = ?4)
		AND (?5 = '' OR m.created_at > ?5) AND (?6 = '' OR m.created_at < ?6)
		AND (NOT ?7 OR m.created_at < ?8 OR (m.created_at = ?8 AND (m.conv < ?9 OR (m.conv = ?9 AND m.seq < ?10))))
	) ORDER BY created_at DESC, conv DESC, seq DESC LIMIT ?11`

// Search implements history.Privacy.
func (s *Store) Search(ctx context.Context, q history.SearchQuery) ([]history.Message, string, error) {
	pos, paging, err := history.ParseSearchCursor(q.Cursor)
	if err != nil {
		return nil, "", err
	}
	if len(q.Terms) == 0 {
		return nil, "", history.Errorf(history.EINVALID, "no words to search for")
	}
	rows, err := s.read.QueryContext(ctx, searchQuery, q.User, history.FTSQuery(q.Terms), q.Conv, q.From,
		optTS(q.After), optTS(q.Before), paging, time.UnixMicro(pos.TS).UTC().Format(tsLayout), pos.Conv, pos.Seq, q.Limit+1)
	msgs, err := collect(rows, err, scanMessage)
	if err != nil {
		return nil, "", translate(err)
	}
	page, next := history.SearchPage(msgs, q.Limit)
	return page, next, nil
}

func optTS(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(tsLayout)
}
