package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/parley-im/parley/history"
)

// receiptsHead reads the kind of conversation ?1, whether user ?2 is a
// current member of it, and how many current members it has, counted up
// to ?3 only (the receipt limit + 1: a large group's count is not needed,
// only that it is above the limit).
const receiptsHead = `SELECT c.kind,
	EXISTS (SELECT 1 FROM members m WHERE m.conv = c.id AND m.user_id = ?2 AND m.left_seq IS NULL),
	(SELECT count(*) FROM (SELECT 1 FROM members m WHERE m.conv = ?1 AND m.left_seq IS NULL LIMIT ?3) x)
	FROM conversations c WHERE c.id = ?1`

// receiptsRows reads the read markers of the current members of
// conversation ?1 other than ?2 and, when ?3 (a direct conversation), the
// highest cursor in it of any of each member's devices.
const receiptsRows = `SELECT m.user_id, m.read_seq,
	CASE WHEN ?3 THEN (SELECT coalesce(max(k.seq), 0) FROM devices d JOIN cursors k ON k.device = d.id
		WHERE d.user_id = m.user_id AND k.conv = m.conv) ELSE 0 END
	FROM members m WHERE m.conv = ?1 AND m.user_id <> ?2 AND m.left_seq IS NULL`

// Receipts implements history.Store: two statements in one read
// transaction.
func (s *Store) Receipts(ctx context.Context, user, conv string, groupMax int) (history.Receipts, error) {
	out := history.Receipts{Conv: conv}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var member bool
		var members int
		err := tx.QueryRowContext(ctx, receiptsHead, conv, user, history.ReceiptsCountLimit(groupMax)).Scan(&out.Kind, &member, &members)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if out.Hidden, err = history.ReceiptsRule(conv, out.Kind, member, members, groupMax); err != nil || out.Hidden {
			return err
		}
		rows, err := tx.QueryContext(ctx, receiptsRows, conv, user, out.Kind == history.KindDirect)
		out.Members, err = collect(rows, err, func(row scanner) (history.Receipt, error) {
			var r history.Receipt
			err := row.Scan(&r.User, &r.ReadSeq, &r.DeliveredSeq)
			return r, err
		})
		return err
	})
	if err != nil {
		return history.Receipts{}, err
	}
	history.SortReceipts(out.Members)
	return out, nil
}
