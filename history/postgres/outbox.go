package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

var (
	_ history.Outboxer = (*Store)(nil)
	_ history.Leaser   = (*Store)(nil)
)

// outboxLockKey is the key of the transaction-scoped advisory lock under
// which every transaction inserts its outbox rows (see queueOutbox). It is a
// one-bigint key; TryLead's session locks use the two-int4 key space, so
// they can never collide with it.
const outboxLockKey = 7210001

// outboxRow is an outbox row to insert.
type outboxRow struct {
	id, kind, conv string
	seq            int64
	user           string // OutboxRead: the reader
	ts             time.Time
}

// messageRows returns the outbox rows of stored messages ms, in order.
func messageRows(ms ...history.Message) []outboxRow {
	rows := make([]outboxRow, len(ms))
	for i, m := range ms {
		rows[i] = outboxRow{id: m.ID, kind: history.OutboxMessage, conv: m.Conv, seq: m.Seq, ts: m.TS}
	}
	return rows
}

// insertOutbox inserts the rows of x(...) in their order: pos is assigned
// (nextval) in that order.
const insertOutbox = `INSERT INTO outbox (id, kind, conv, seq, user_id, ts)
	SELECT i, k, c, s, nullif(u, ''), ts
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[]) WITH ORDINALITY AS x(i, k, c, s, u, ts, n)
	ORDER BY n`

// queueOutbox queues on batch the outbox rows of the transaction. It must be
// the LAST thing the transaction does before COMMIT: it queues the outbox
// advisory lock and then the insert of the rows, whose positions (nextval)
// are thus handed out under the lock.
//
// Why: a sink reads the outbox by position and remembers the last one it
// saw, so positions must become visible in commit order; a sequence alone
// does not give that (a transaction that took pos 7 may commit after one
// that took pos 8, and a reader that saw 8 would skip 7 for ever). Under
// the lock, one transaction at a time takes positions and commits, and
// PostgreSQL releases a transaction's locks only after its commit is
// visible to others, so the next holder's positions are all above every
// visible one. Taken last, after every row lock of the transaction (the
// conversations' FOR UPDATE, members, messages), the lock is held only from
// here to COMMIT, about one round trip, and its holder never waits for
// another lock: no deadlock with the row locks. Queued at the end of the
// transaction's last pipelined batch, it costs no extra round trip.
func queueOutbox(batch *pgx.Batch, rows []outboxRow) {
	if len(rows) == 0 {
		return
	}
	n := len(rows)
	id, kind, conv, user := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seq, ts := make([]int64, n), make([]time.Time, n)
	for i, r := range rows {
		id[i], kind[i], conv[i], seq[i], user[i], ts[i] = r.id, r.kind, r.conv, r.seq, r.user, r.ts
	}
	batch.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(outboxLockKey))
	batch.Queue(insertOutbox, id, kind, conv, seq, user, ts)
}

// Outbox implements history.Outboxer: one query, the events' messages as
// they are now joined in (all NULL when a message is gone).
func (s *Store) Outbox(ctx context.Context, after int64, limit int) ([]history.OutboxEvent, error) {
	if err := history.CheckOutboxLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT o.pos, o.id, o.kind, o.conv, o.seq, coalesce(o.user_id, ''), o.ts,
		`+lastMessageColumns+`
		FROM outbox o LEFT JOIN messages lm ON o.kind = 'message' AND lm.conv = o.conv AND lm.seq = o.seq
		WHERE o.pos > $1 ORDER BY o.pos LIMIT $2`, after, limit)
	if err != nil {
		return nil, translate(err)
	}
	var out []history.OutboxEvent
	var e history.OutboxEvent
	var lm lastMessage
	_, err = pgx.ForEachRow(rows, append([]any{&e.Pos, &e.ID, &e.Kind, &e.Conv, &e.Seq, &e.User, &e.TS}, lm.targets()...), func() error {
		e.TS = e.TS.UTC()
		e.Message = lm.message()
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}

// OutboxHead implements history.Outboxer: the highest position in the
// outbox. Once every row was pruned, it is the sequence's last value, which
// may count a row still being committed.
func (s *Store) OutboxHead(ctx context.Context) (int64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT max(pos) FROM outbox),
		(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_pos_seq))`).Scan(&head)
	return head, translate(err)
}

// SinkPosition implements history.Outboxer.
func (s *Store) SinkPosition(ctx context.Context, sink string) (int64, bool, error) {
	var pos int64
	err := s.pool.QueryRow(ctx, `SELECT pos FROM sink_positions WHERE sink = $1`, sink).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, translate(err)
	}
	return pos, true, nil
}

// SaveSinkPosition implements history.Outboxer. It stores pos as given,
// even below the position saved before.
func (s *Store) SaveSinkPosition(ctx context.Context, sink string, pos int64) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO sink_positions (sink, pos, updated_at) VALUES ($1, $2, now())
		ON CONFLICT (sink) DO UPDATE SET pos = EXCLUDED.pos, updated_at = EXCLUDED.updated_at`, sink, pos)
	return translate(err)
}

// PruneOutbox implements history.Outboxer.
func (s *Store) PruneOutbox(ctx context.Context, upTo int64, limit int) (int, error) {
	if err := history.CheckOutboxLimit(limit); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM outbox WHERE pos IN (SELECT pos FROM outbox WHERE pos <= $1 ORDER BY pos LIMIT $2)`, upTo, limit)
	if err != nil {
		return 0, translate(err)
	}
	return int(tag.RowsAffected()), nil
}

// SetPushToken implements history.Outboxer.
func (s *Store) SetPushToken(ctx context.Context, user string, t history.PushToken) error {
	if err := history.CheckPushToken(user, t); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO push_tokens (device, user_id, provider, token, updated_at) VALUES ($1, $2, $3, $4, now())
		ON CONFLICT (device) DO UPDATE SET user_id = EXCLUDED.user_id, provider = EXCLUDED.provider, token = EXCLUDED.token,
		updated_at = EXCLUDED.updated_at`, t.Device, user, t.Provider, t.Token)
	if err != nil {
		return translate(err)
	}
	// Keep the new one and the most recent others, MaxPushTokens in all.
	_, err = s.pool.Exec(ctx, `DELETE FROM push_tokens WHERE user_id = $1 AND device <> $3 AND device NOT IN
		(SELECT device FROM push_tokens WHERE user_id = $1 AND device <> $3 ORDER BY updated_at DESC, device LIMIT $2)`,
		user, history.MaxPushTokens-1, t.Device)
	return translate(err)
}

// DeletePushToken implements history.Outboxer.
func (s *Store) DeletePushToken(ctx context.Context, device, token string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM push_tokens WHERE device = $1 AND ($2 = '' OR token = $2)`, device, token)
	return translate(err)
}

// pushTargetsQuery selects, among users $3, the current members of conv $1
// who have push tokens, have not muted it at $4, and none of whose devices
// acknowledged seq $2, unless that message was deleted meanwhile, with their total unread counts (as
// ConversationView.Unread, summed over all their conversations).
const pushTargetsQuery = `SELECT m.user_id,
		(SELECT count(*) FROM members um JOIN conversations c ON c.id = um.conv
			JOIN messages x ON x.conv = um.conv AND x.seq > um.read_seq AND x.seq >= um.joined_seq
				AND x.seq <= coalesce(um.left_seq, c.last_seq)
			WHERE um.user_id = m.user_id AND x.sender <> m.user_id AND NOT x.event AND NOT x.deleted)
	FROM members m
	WHERE m.conv = $1 AND m.user_id = ANY($3) AND m.left_seq IS NULL
		AND (m.muted_until IS NULL OR m.muted_until <= $4)
		AND EXISTS (SELECT 1 FROM push_tokens p WHERE p.user_id = m.user_id)
		AND NOT EXISTS (SELECT 1 FROM devices d JOIN cursors k ON k.device = d.id
			WHERE d.user_id = m.user_id AND k.conv = $1 AND k.seq >= $2)
		AND EXISTS (SELECT 1 FROM messages w WHERE w.conv = $1 AND w.seq = $2 AND NOT w.deleted)
	ORDER BY m.user_id`

// PushTargets implements history.Outboxer in two queries: the targets with
// their unread counts, then their tokens.
func (s *Store) PushTargets(ctx context.Context, conv string, seq int64, users []string, now time.Time) ([]history.PushTarget, error) {
	if len(users) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, pushTargetsQuery, conv, seq, users, now)
	if err != nil {
		return nil, translate(err)
	}
	var targets []history.PushTarget
	var t history.PushTarget
	if _, err := pgx.ForEachRow(rows, []any{&t.User, &t.Unread}, func() error {
		targets = append(targets, t)
		return nil
	}); err != nil {
		return nil, translate(err)
	}
	if len(targets) == 0 {
		return nil, nil
	}
	rows, err = s.pool.Query(ctx, `SELECT user_id, device, provider, token FROM push_tokens WHERE user_id = ANY($1) ORDER BY user_id, device`, history.TargetUsers(targets))
	if err != nil {
		return nil, translate(err)
	}
	tokens := map[string][]history.PushToken{}
	var user string
	var pt history.PushToken
	if _, err := pgx.ForEachRow(rows, []any{&user, &pt.Device, &pt.Provider, &pt.Token}, func() error {
		tokens[user] = append(tokens[user], pt)
		return nil
	}); err != nil {
		return nil, translate(err)
	}
	return history.WithTokens(targets, tokens), nil
}
