package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/parley-im/parley/history"
)

// SetRetention implements history.Privacy.
func (s *Store) SetRetention(ctx context.Context, user, conv string, d time.Duration) (time.Duration, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var kind, role string
		err := tx.QueryRowContext(ctx, `SELECT c.kind, m.role FROM members m JOIN conversations c ON c.id = m.conv
			WHERE m.conv = ? AND m.user_id = ? AND m.left_seq IS NULL`, conv, user).Scan(&kind, &role)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		secs, err := history.RetentionRule(conv, err == nil, kind, role, d)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE conversations SET retention_s = ? WHERE id = ?`, secs, conv)
		return err
	})
	if err != nil {
		return 0, err
	}
	return d.Truncate(time.Second), nil
}

// Retention implements history.Privacy.
func (s *Store) Retention(ctx context.Context, conv string) (time.Duration, error) {
	var secs sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT retention_s FROM conversations WHERE id = ?`, conv).Scan(&secs)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, translate(err)
	}
	return time.Duration(secs.Int64) * time.Second, nil
}

// Expire implements history.Privacy: one write transaction that deletes the
// expired prefix of each candidate conversation, up to limit messages in
// all.
func (s *Store) Expire(ctx context.Context, now time.Time, global time.Duration, limit int) (int, error) {
	var total int
	g := int64(global / time.Second)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, secs FROM (SELECT c.id, CASE
				WHEN ?1 > 0 AND c.retention_s IS NOT NULL THEN min(?1, c.retention_s)
				WHEN ?1 > 0 THEN ?1 ELSE c.retention_s END AS secs FROM conversations c) x
			WHERE secs IS NOT NULL
			AND (SELECT created_at FROM messages m WHERE m.conv = x.id ORDER BY seq LIMIT 1) < strftime('%Y-%m-%dT%H:%M:%fZ', ?2, '-' || secs || ' seconds')
			LIMIT ?3`, g, now.UTC().Format("2006-01-02 15:04:05.000"), limit)
		type cand struct {
			conv string
			secs int64
		}
		cands, err := collect(rows, err, func(row scanner) (cand, error) {
			var c cand
			err := row.Scan(&c.conv, &c.secs)
			return c, err
		})
		if err != nil {
			return err
		}
		for _, c := range cands {
			if total >= limit {
				break
			}
			cutoff := now.Add(-time.Duration(c.secs) * time.Second)
			rows, err := tx.QueryContext(ctx, `SELECT seq, created_at FROM messages WHERE conv = ? ORDER BY seq LIMIT ?`, c.conv, limit-total)
			if err != nil {
				return err
			}
			var seqs []int64
			var ts []time.Time
			for rows.Next() {
				var seq int64
				var at string
				if err := rows.Scan(&seq, &at); err != nil {
					rows.Close()
					return err
				}
				t, err := time.Parse(tsLayout, at)
				if err != nil {
					rows.Close()
					return err
				}
				seqs, ts = append(seqs, seq), append(ts, t)
			}
			rows.Close()
			n := history.ExpirePrefix(ts, cutoff)
			if n == 0 {
				continue
			}
			upto := seqs[n-1]
			if _, err := tx.ExecContext(ctx, `DELETE FROM reactions WHERE conv = ? AND seq <= ?`, c.conv, upto); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE conv = ? AND seq <= ?`, c.conv, upto); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE conversations SET expired_before = max(expired_before, ?2 + 1), changed_xid = (SELECT n FROM changes) + 1 WHERE id = ?1`, c.conv, upto); err != nil {
				return err
			}
			total += n
		}
		if total > 0 {
			return countChange(ctx, tx)
		}
		return nil
	})
	return total, err
}

// Block implements history.Privacy.
func (s *Store) Block(ctx context.Context, user, other string, at time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var count int
		var already bool
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(max(blocked = ?2), 0) FROM blocks WHERE user_id = ?1`, user, other).Scan(&count, &already); err != nil {
			return err
		}
		if err := history.CheckBlock(count, already); err != nil || already {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO blocks (user_id, blocked, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, user, other, at.UTC().Format(tsLayout))
		return err
	})
}

// Unblock implements history.Privacy.
func (s *Store) Unblock(ctx context.Context, user, other string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM blocks WHERE user_id = ? AND blocked = ?`, user, other)
		return err
	})
}

// Blocks implements history.Privacy.
func (s *Store) Blocks(ctx context.Context, user string) ([]history.Block, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT blocked, created_at FROM blocks WHERE user_id = ? ORDER BY blocked`, user)
	out, err := collect(rows, err, func(row scanner) (history.Block, error) {
		var b history.Block
		var at string
		err := row.Scan(&b.User, &at)
		b.At, _ = time.Parse(tsLayout, at)
		b.At = b.At.UTC()
		return b, err
	})
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}

// Relation implements history.Privacy: one query.
func (s *Store) Relation(ctx context.Context, a, b string) (history.Relation, error) {
	var r history.Relation
	var fromA, fromB bool
	err := s.readStmts.queryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND blocked = ?2),
		EXISTS (SELECT 1 FROM blocks WHERE user_id = ?2 AND blocked = ?1),
		EXISTS (SELECT 1 FROM members x JOIN members y ON x.conv = y.conv JOIN conversations c ON c.id = x.conv
			WHERE x.user_id = ?1 AND y.user_id = ?2 AND x.left_seq IS NULL AND y.left_seq IS NULL AND c.kind = 'group'),
		EXISTS (SELECT 1 FROM messages WHERE conv = ?3 AND sender = ?1 AND NOT event),
		EXISTS (SELECT 1 FROM messages WHERE conv = ?3 AND sender = ?2 AND NOT event)`, a, b, history.DirectConvID(a, b)).
		Scan(&r.ABlocksB, &r.BBlocksA, &r.SharesGroup, &fromA, &fromB)
	r.Talked, r.Started = fromA && fromB, fromA || fromB
	return r, translate(err)
}

// TokensValidAfter implements history.Privacy.
func (s *Store) TokensValidAfter(ctx context.Context, user string) (time.Time, error) {
	var at sql.NullString
	err := s.read.QueryRowContext(ctx, `SELECT tokens_valid_after FROM users WHERE id = ?`, user).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !at.Valid) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, translate(err)
	}
	t, err := time.Parse(tsLayout, at.String)
	return t.UTC(), err
}

// DeleteUser implements history.Privacy: one write transaction.
func (s *Store) DeleteUser(ctx context.Context, user string, now time.Time, newID func() string) (history.DeletedUser, error) {
	var out history.DeletedUser
	err := s.tx(ctx, func(tx *sql.Tx) error {
		out = history.DeletedUser{Members: map[string][]string{}}
		rows, err := tx.QueryContext(ctx, `SELECT m.conv, m.seq, mb.user_id IS NOT NULL AND mb.left_seq IS NULL FROM messages m
			LEFT JOIN members mb ON mb.conv = m.conv AND mb.user_id = m.sender
			WHERE m.sender = ? AND NOT m.event AND NOT m.deleted ORDER BY m.conv, m.seq`, user)
		if err != nil {
			return err
		}
		live := map[string][]history.SeqKey{}
		var convs []string
		var erase []history.SeqKey
		for rows.Next() {
			var k history.SeqKey
			var member bool
			if err := rows.Scan(&k.Conv, &k.Seq, &member); err != nil {
				rows.Close()
				return err
			}
			if member {
				if live[k.Conv] == nil {
					convs = append(convs, k.Conv)
				}
				live[k.Conv] = append(live[k.Conv], k)
			} else {
				erase = append(erase, k)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var changes []history.Change
		for _, conv := range convs {
			var last int64
			if err := tx.QueryRowContext(ctx, `SELECT last_seq FROM conversations WHERE id = ?`, conv).Scan(&last); err != nil {
				return err
			}
			evs := history.PlanUserDeletion(user, live[conv], last, now, newID)
			for _, m := range evs {
				if _, err := tx.ExecContext(ctx, insertSQL, messageArgs(m)...); err != nil {
					return err
				}
			}
			out.Events = append(out.Events, evs...)
			for _, k := range live[conv] {
				changes = append(changes, history.Change{Op: history.OpDelete, Conv: conv, Target: k.Seq})
			}
			end := evs[len(evs)-1]
			if err := moveConv(ctx, tx, history.ConvLast{Conv: conv, Seq: end.Seq, TS: end.TS}); err != nil {
				return err
			}
		}
		for _, k := range erase {
			changes = append(changes, history.Change{Op: history.OpDelete, Conv: k.Conv, Target: k.Seq})
		}
		out.Erased = len(erase)
		if err := applyChanges(ctx, tx, changes); err != nil {
			return err
		}
		if err := writeMessageEvents(ctx, tx, out.Events...); err != nil {
			return err
		}
		stmts := []string{
			`UPDATE conversations SET member_version = member_version + 1, changed_xid = (SELECT n FROM changes) + 1
				WHERE id IN (SELECT conv FROM members WHERE user_id = ?1 AND left_seq IS NULL) AND kind = 'group'`,
			`DELETE FROM members WHERE user_id = ?1 AND conv IN (SELECT id FROM conversations WHERE kind = 'group')`,
			`UPDATE members SET read_seq = 0, muted_until = NULL, archived = 0, pinned = 0, changed_xid = (SELECT n FROM changes) + 1 WHERE user_id = ?1`,
			`DELETE FROM reactions WHERE user_id = ?1`,
			`DELETE FROM cursors WHERE device = ?1 OR substr(device, 1, length(?1) + 1) = ?1 || '/'`,
			`DELETE FROM sessions WHERE device = ?1 OR substr(device, 1, length(?1) + 1) = ?1 || '/'`,
			`DELETE FROM devices WHERE user_id = ?1`,
			`DELETE FROM push_tokens WHERE user_id = ?1`,
			`DELETE FROM blocks WHERE user_id = ?1 OR blocked = ?1`,
			`INSERT INTO users (id, tokens_valid_after) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET tokens_valid_after = ?2`,
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q, user, now.UTC().Format(tsLayout)); err != nil {
				return err
			}
		}
		if err := countChange(ctx, tx); err != nil {
			return err
		}
		for _, conv := range convs {
			rows, err := tx.QueryContext(ctx, `SELECT user_id FROM members WHERE conv = ? AND left_seq IS NULL ORDER BY user_id`, conv)
			ms, err := collect(rows, err, scanString)
			if err != nil {
				return err
			}
			if len(ms) > 0 {
				out.Members[conv] = ms
			}
		}
		return nil
	})
	return out, err
}

// Export implements history.Privacy: one read transaction.
func (s *Store) Export(ctx context.Context, user string, fn func(history.ExportItem) error) error {
	return s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT c.id, c.kind, coalesce(g.name, ''), coalesce(m.left_seq, c.last_seq), m.read_seq
			FROM members m JOIN conversations c ON c.id = m.conv
			LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
			WHERE m.user_id = ? ORDER BY c.id`, user)
		views, err := collect(rows, err, func(row scanner) (history.ConversationView, error) {
			var v history.ConversationView
			err := row.Scan(&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq)
			v.SetParties(user)
			return v, err
		})
		if err != nil {
			return err
		}
		for i := range views {
			if err := fn(history.ExportItem{Conversation: &views[i]}); err != nil {
				return err
			}
		}
		rows, err = tx.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages
			WHERE sender = ? AND (NOT event OR type IN (SELECT value FROM json_each(?))) ORDER BY conv, seq`, user, exportedChanges)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				return err
			}
			if err := fn(history.ExportItem{Message: &m}); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// exportedChanges is history.ExportedChanges as a JSON array, for
// json_each.
var exportedChanges = func() string {
	b, _ := json.Marshal(history.ExportedChanges)
	return string(b)
}()
