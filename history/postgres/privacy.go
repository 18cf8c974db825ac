package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// SetRetention implements history.Privacy.
func (s *Store) SetRetention(ctx context.Context, user, conv string, d time.Duration) (time.Duration, error) {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var kind, role string
		err := tx.QueryRow(ctx, `SELECT c.kind, m.role FROM members m JOIN conversations c ON c.id = m.conv
			WHERE m.conv = $1 AND m.user_id = $2 AND m.left_seq IS NULL`, conv, user).Scan(&kind, &role)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		secs, err := history.RetentionRule(conv, err == nil, kind, role, d)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE conversations SET retention_s = $2 WHERE id = $1`, conv, secs)
		return err
	})
	if err != nil {
		return 0, err
	}
	return d.Truncate(time.Second), nil
}

// Retention implements history.Privacy.
func (s *Store) Retention(ctx context.Context, conv string) (time.Duration, error) {
	var secs *int64
	err := s.pool.QueryRow(ctx, `SELECT retention_s FROM conversations WHERE id = $1`, conv).Scan(&secs)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && secs == nil) {
		return 0, nil
	}
	if err != nil {
		return 0, translate(err)
	}
	return time.Duration(*secs) * time.Second, nil
}

// expireCandidates selects up to $3 conversations whose first message is
// older than their effective retention at $1 (global retention $2 seconds,
// 0: none), with that cutoff: one index lookup per conversation that has a
// retention.
const expireCandidates = `SELECT c.id, $1::timestamptz - make_interval(secs => r.secs) FROM conversations c
	CROSS JOIN LATERAL (SELECT CASE
		WHEN $2::bigint > 0 AND c.retention_s IS NOT NULL THEN least($2::bigint, c.retention_s)
		WHEN $2::bigint > 0 THEN $2::bigint ELSE c.retention_s END AS secs) r
	WHERE r.secs IS NOT NULL
	AND (SELECT created_at FROM messages m WHERE m.conv = c.id ORDER BY seq LIMIT 1) < $1::timestamptz - make_interval(secs => r.secs)
	LIMIT $3`

// Expire implements history.Privacy: one transaction that deletes the
// expired prefix of each candidate conversation, up to limit messages in
// all. It takes no conversation lock: sends append above the deleted
// prefix.
func (s *Store) Expire(ctx context.Context, now time.Time, global time.Duration, limit int) (int, error) {
	var total int
	err := s.tx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, expireCandidates, now, int64(global/time.Second), limit)
		if err != nil {
			return err
		}
		type cand struct {
			conv   string
			cutoff time.Time
		}
		var cands []cand
		var c cand
		if _, err := pgx.ForEachRow(rows, []any{&c.conv, &c.cutoff}, func() error {
			cands = append(cands, c)
			return nil
		}); err != nil {
			return err
		}
		for _, c := range cands {
			if total >= limit {
				break
			}
			rows, err := tx.Query(ctx, `SELECT seq, created_at FROM messages WHERE conv = $1 ORDER BY seq LIMIT $2`, c.conv, limit-total)
			if err != nil {
				return err
			}
			var seqs []int64
			var ts []time.Time
			var seq int64
			var at time.Time
			if _, err := pgx.ForEachRow(rows, []any{&seq, &at}, func() error {
				seqs, ts = append(seqs, seq), append(ts, at)
				return nil
			}); err != nil {
				return err
			}
			n := history.ExpirePrefix(ts, c.cutoff)
			if n == 0 {
				continue
			}
			upto := seqs[n-1]
			batch := &pgx.Batch{}
			batch.Queue(`DELETE FROM reactions WHERE conv = $1 AND seq <= $2`, c.conv, upto)
			batch.Queue(`DELETE FROM messages WHERE conv = $1 AND seq <= $2`, c.conv, upto)
			batch.Queue(`UPDATE conversations SET expired_before = greatest(expired_before, $2 + 1), changed_xid = pg_current_xact_id()::text::bigint WHERE id = $1`, c.conv, upto)
			if err := tx.SendBatch(ctx, batch).Close(); err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// Block implements history.Privacy.
// The user's blocks are counted under a transaction-scoped advisory lock
// on the user, so that concurrent blocks of one user cannot pass
// MaxBlocks together.
func (s *Store) Block(ctx context.Context, user, other string, at time.Time) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		// The lock first, in a statement of its own: under read committed
		// the count's snapshot is then taken after the lock is held.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('parley.blocks:' || $1, 0))`, user); err != nil {
			return err
		}
		var count int
		var already bool
		if err := tx.QueryRow(ctx, `SELECT count(*), coalesce(bool_or(blocked = $2), false) FROM blocks WHERE user_id = $1`, user, other).Scan(&count, &already); err != nil {
			return err
		}
		if err := history.CheckBlock(count, already); err != nil || already {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO blocks (user_id, blocked, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, user, other, at.UTC())
		return err
	})
}

// Unblock implements history.Privacy.
func (s *Store) Unblock(ctx context.Context, user, other string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM blocks WHERE user_id = $1 AND blocked = $2`, user, other)
	return translate(err)
}

// Blocks implements history.Privacy.
func (s *Store) Blocks(ctx context.Context, user string) ([]history.Block, error) {
	rows, err := s.pool.Query(ctx, `SELECT blocked, created_at FROM blocks WHERE user_id = $1 ORDER BY blocked`, user)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Block, error) {
		var b history.Block
		err := r.Scan(&b.User, &b.At)
		b.At = b.At.UTC()
		return b, err
	})
	return out, translate(err)
}

// Relation implements history.Privacy: one query.
func (s *Store) Relation(ctx context.Context, a, b string) (history.Relation, error) {
	var r history.Relation
	var fromA, fromB bool
	dm := history.DirectConvID(a, b)
	err := s.pool.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND blocked = $2),
		EXISTS (SELECT 1 FROM blocks WHERE user_id = $2 AND blocked = $1),
		EXISTS (SELECT 1 FROM members x JOIN members y ON x.conv = y.conv JOIN conversations c ON c.id = x.conv
			WHERE x.user_id = $1 AND y.user_id = $2 AND x.left_seq IS NULL AND y.left_seq IS NULL AND c.kind = 'group'),
		EXISTS (SELECT 1 FROM messages WHERE conv = $3 AND sender = $1 AND NOT event),
		EXISTS (SELECT 1 FROM messages WHERE conv = $3 AND sender = $2 AND NOT event)`, a, b, dm).
		Scan(&r.ABlocksB, &r.BBlocksA, &r.SharesGroup, &fromA, &fromB)
	r.Talked, r.Started = fromA && fromB, fromA || fromB
	return r, translate(err)
}

// TokensValidAfter implements history.Privacy.
func (s *Store) TokensValidAfter(ctx context.Context, user string) (time.Time, error) {
	var t *time.Time
	err := s.pool.QueryRow(ctx, `SELECT tokens_valid_after FROM users WHERE id = $1`, user).Scan(&t)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && t == nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, translate(err)
	}
	return t.UTC(), nil
}

// DeleteUser implements history.Privacy. It locks the conversations in
// which it appends events, in id order as AppendBatch does.
func (s *Store) DeleteUser(ctx context.Context, user string, now time.Time, newID func() string) (history.DeletedUser, error) {
	var out history.DeletedUser
	err := s.tx(ctx, func(tx pgx.Tx) error {
		out = history.DeletedUser{Members: map[string][]string{}}
		// The user's live messages in conversations it is still a member of
		// get events; the others are erased.
		rows, err := tx.Query(ctx, `SELECT m.conv, m.seq, mb.left_seq IS NULL FROM messages m
			LEFT JOIN members mb ON mb.conv = m.conv AND mb.user_id = m.sender
			WHERE m.sender = $1 AND NOT m.event AND NOT m.deleted ORDER BY m.conv, m.seq`, user)
		if err != nil {
			return err
		}
		live := map[string][]history.SeqKey{}
		var convs []string
		var erase []history.SeqKey
		var k history.SeqKey
		var member *bool
		if _, err := pgx.ForEachRow(rows, []any{&k.Conv, &k.Seq, &member}, func() error {
			if member != nil && *member {
				if live[k.Conv] == nil {
					convs = append(convs, k.Conv)
				}
				live[k.Conv] = append(live[k.Conv], k)
			} else {
				erase = append(erase, k)
			}
			return nil
		}); err != nil {
			return err
		}
		batch := &pgx.Batch{}
		if len(convs) > 0 {
			rows, err := tx.Query(ctx, `SELECT id, last_seq FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE`, convs)
			if err != nil {
				return err
			}
			last := map[string]int64{}
			var id string
			var seq int64
			if _, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
				last[id] = seq
				return nil
			}); err != nil {
				return err
			}
			var changes []history.Change
			for _, conv := range convs {
				evs := history.PlanUserDeletion(user, live[conv], last[conv], now, newID)
				out.Events = append(out.Events, evs...)
				for _, k := range live[conv] {
					changes = append(changes, history.Change{Op: history.OpDelete, Conv: conv, Target: k.Seq})
				}
				end := evs[len(evs)-1]
				batch.Queue(`UPDATE conversations SET last_seq = $2, updated_at = $3, changed_xid = pg_current_xact_id()::text::bigint WHERE id = $1`, conv, end.Seq, end.TS)
			}
			queueInsert(batch, out.Events)
			queueChanges(batch, changes)
		}
		for _, k := range erase {
			queueChanges(batch, []history.Change{{Op: history.OpDelete, Conv: k.Conv, Target: k.Seq}})
		}
		out.Erased = len(erase)
		batch.Queue(`UPDATE conversations SET member_version = member_version + 1, changed_xid = pg_current_xact_id()::text::bigint
			WHERE id IN (SELECT conv FROM members WHERE user_id = $1 AND left_seq IS NULL) AND kind = 'group'`, user)
		batch.Queue(`DELETE FROM members WHERE user_id = $1 AND conv IN (SELECT id FROM conversations WHERE kind = 'group')`, user)
		batch.Queue(`UPDATE members SET read_seq = 0, muted_until = NULL, archived = false, pinned = false,
			changed_xid = pg_current_xact_id()::text::bigint WHERE user_id = $1`, user)
		batch.Queue(`DELETE FROM reactions WHERE user_id = $1`, user)
		batch.Queue(`DELETE FROM cursors WHERE device = $1 OR left(device, length($1) + 1) = $1 || '/'`, user)
		batch.Queue(`DELETE FROM sessions WHERE device = $1 OR left(device, length($1) + 1) = $1 || '/'`, user)
		batch.Queue(`DELETE FROM devices WHERE user_id = $1`, user)
		batch.Queue(`DELETE FROM push_tokens WHERE user_id = $1`, user)
		batch.Queue(`DELETE FROM blocks WHERE user_id = $1 OR blocked = $1`, user)
		batch.Queue(`INSERT INTO users (id, tokens_valid_after) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET tokens_valid_after = $2`, user, now.UTC())
		queueOutbox(batch, messageRows(out.Events...)) // last: see queueOutbox
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}
		if len(convs) == 0 {
			return nil
		}
		rows, err = tx.Query(ctx, `SELECT conv, user_id FROM members WHERE conv = ANY($1) AND left_seq IS NULL ORDER BY conv, user_id`, convs)
		if err != nil {
			return err
		}
		var conv, u string
		_, err = pgx.ForEachRow(rows, []any{&conv, &u}, func() error {
			out.Members[conv] = append(out.Members[conv], u)
			return nil
		})
		return err
	})
	return out, err
}

// Export implements history.Privacy: one read-only snapshot.
func (s *Store) Export(ctx context.Context, user string, fn func(history.ExportItem) error) error {
	err := s.snapshot(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.id, c.kind, coalesce(g.name, ''), coalesce(m.left_seq, c.last_seq), m.read_seq
			FROM members m JOIN conversations c ON c.id = m.conv
			LEFT JOIN groups g ON c.kind = 'group' AND g.id = substr(c.id, 3)
			WHERE m.user_id = $1 ORDER BY c.id`, user)
		if err != nil {
			return err
		}
		var views []history.ConversationView
		var v history.ConversationView
		if _, err := pgx.ForEachRow(rows, []any{&v.ID, &v.Kind, &v.Name, &v.LastSeq, &v.ReadSeq}, func() error {
			v.SetParties(user)
			views = append(views, v)
			return nil
		}); err != nil {
			return err
		}
		for i := range views {
			if err := fn(history.ExportItem{Conversation: &views[i]}); err != nil {
				return err
			}
		}
		rows, err = tx.Query(ctx, `SELECT `+messageColumns+` FROM messages
			WHERE sender = $1 AND (NOT event OR type = ANY($2)) ORDER BY conv, seq`, user, history.ExportedChanges)
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
	return translate(err)
}
