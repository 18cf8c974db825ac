package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/parley-im/parley/history"
)

var _ history.Outboxer = (*Store)(nil)

// insertOutboxSQL inserts one outbox row. SQLite commits one writer at a
// time, so AUTOINCREMENT positions are handed out in commit order: a reader
// that saw pos p never later sees a new row below p.
const (
	insertOutboxHead = `INSERT INTO outbox (id, kind, conv, seq, user_id, ts) VALUES `
	insertOutboxRow  = `(?, ?, ?, ?, ?, ?)`
	insertOutboxSQL  = insertOutboxHead + insertOutboxRow
)

// writeMessageEvents writes the outbox rows of stored messages ms, in order.
func writeMessageEvents(ctx context.Context, ex execer, ms ...history.Message) error {
	return insertRows(ctx, ex, insertOutboxHead, insertOutboxRow, len(ms), func(i int, into []any) []any {
		m := ms[i]
		return append(into, m.ID, history.OutboxMessage, m.Conv, m.Seq, nil, m.TS.UTC().Format(tsLayout))
	})
}

// writeReadEvent writes the outbox row of user's read marker moved to seq
// in conv.
func writeReadEvent(ctx context.Context, ex execer, user, conv string, seq int64) error {
	now := time.Now()
	_, err := ex.ExecContext(ctx, insertOutboxSQL, history.NewID(now), history.OutboxRead, conv, seq, user, now.UTC().Format(tsLayout))
	return err
}

// Outbox implements history.Outboxer: one query, the events' messages as
// they are now joined in (all NULL when a message is gone).
func (s *Store) Outbox(ctx context.Context, after int64, limit int) ([]history.OutboxEvent, error) {
	if err := history.CheckOutboxLimit(limit); err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, `SELECT o.pos, o.id, o.kind, o.conv, o.seq, coalesce(o.user_id, ''), o.ts,
		`+lastMessageColumns+`
		FROM outbox o LEFT JOIN messages lm ON o.kind = 'message' AND lm.conv = o.conv AND lm.seq = o.seq
		WHERE o.pos > ? ORDER BY o.pos LIMIT ?`, after, limit)
	out, err := collect(rows, err, scanOutboxEvent)
	if err != nil {
		return nil, translate(err)
	}
	return out, nil
}

// scanOutboxEvent reads a row of Outbox's query: the event, then its
// message's columns (all NULL when there is none).
func scanOutboxEvent(row scanner) (history.OutboxEvent, error) {
	var e history.OutboxEvent
	var ts string
	var lm lastMessage
	if err := row.Scan(append([]any{&e.Pos, &e.ID, &e.Kind, &e.Conv, &e.Seq, &e.User, &ts}, lm.targets()...)...); err != nil {
		return e, err
	}
	t, err := time.Parse(tsLayout, ts)
	if err != nil {
		return e, err
	}
	e.TS = t.UTC()
	e.Message, err = lm.message()
	return e, err
}

// OutboxHead implements history.Outboxer: AUTOINCREMENT's record of the
// highest position ever inserted, which pruning does not lower.
func (s *Store) OutboxHead(ctx context.Context) (int64, error) {
	var head int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)`).Scan(&head)
	return head, translate(err)
}

// SinkPosition implements history.Outboxer.
func (s *Store) SinkPosition(ctx context.Context, sink string) (int64, bool, error) {
	var pos int64
	err := s.read.QueryRowContext(ctx, `SELECT pos FROM sink_positions WHERE sink = ?`, sink).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
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
	_, err := s.write.ExecContext(ctx, `INSERT INTO sink_positions (sink, pos, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (sink) DO UPDATE SET pos = ?2, updated_at = ?3`, sink, pos, now())
	return translate(err)
}

// PruneOutbox implements history.Outboxer.
func (s *Store) PruneOutbox(ctx context.Context, upTo int64, limit int) (int, error) {
	if err := history.CheckOutboxLimit(limit); err != nil {
		return 0, err
	}
	res, err := s.write.ExecContext(ctx, `DELETE FROM outbox WHERE pos IN (SELECT pos FROM outbox WHERE pos <= ? ORDER BY pos LIMIT ?)`, upTo, limit)
	if err != nil {
		return 0, translate(err)
	}
	n, err := res.RowsAffected()
	return int(n), translate(err)
}

// SetPushToken implements history.Outboxer.
func (s *Store) SetPushToken(ctx context.Context, user string, t history.PushToken) error {
	if err := history.CheckPushToken(user, t); err != nil {
		return err
	}
	_, err := s.write.ExecContext(ctx, `INSERT INTO push_tokens (device, user_id, provider, token, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
		ON CONFLICT (device) DO UPDATE SET user_id = ?2, provider = ?3, token = ?4, updated_at = ?5`, t.Device, user, t.Provider, t.Token, now())
	if err != nil {
		return translate(err)
	}
	// Keep the new one and the most recent others, MaxPushTokens in all.
	_, err = s.write.ExecContext(ctx, `DELETE FROM push_tokens WHERE user_id = ?1 AND device <> ?3 AND device NOT IN
		(SELECT device FROM push_tokens WHERE user_id = ?1 AND device <> ?3 ORDER BY updated_at DESC, device LIMIT ?2)`,
		user, history.MaxPushTokens-1, t.Device)
	return translate(err)
}

// DeletePushToken implements history.Outboxer.
func (s *Store) DeletePushToken(ctx context.Context, device, token string) error {
	_, err := s.write.ExecContext(ctx, `DELETE FROM push_tokens WHERE device = ?1 AND (?2 = '' OR token = ?2)`, device, token)
	return translate(err)
}

// pushTargetsQuery selects, among users ?3 (a JSON array), the current
// members of conv ?1 who have push tokens, have not muted it at ?4, and
// none of whose devices acknowledged seq ?2, with their total unread counts
// (as ConversationView.Unread, summed over all their conversations).
const pushTargetsQuery = `SELECT m.user_id,
		(SELECT count(*) FROM members um JOIN conversations c ON c.id = um.conv
			JOIN messages x ON x.conv = um.conv AND x.seq > um.read_seq AND x.seq >= um.joined_seq
				AND x.seq <= coalesce(um.left_seq, c.last_seq)
			WHERE um.user_id = m.user_id AND x.sender <> m.user_id AND NOT x.event AND NOT x.deleted)
	FROM members m
	WHERE m.conv = ?1 AND m.user_id IN (SELECT value FROM json_each(?3)) AND m.left_seq IS NULL
		AND (m.muted_until IS NULL OR m.muted_until <= ?4)
		AND EXISTS (SELECT 1 FROM push_tokens p WHERE p.user_id = m.user_id)
		AND NOT EXISTS (SELECT 1 FROM devices d JOIN cursors k ON k.device = d.id
			WHERE d.user_id = m.user_id AND k.conv = ?1 AND k.seq >= ?2)
		AND EXISTS (SELECT 1 FROM messages w WHERE w.conv = ?1 AND w.seq = ?2 AND NOT w.deleted)
	ORDER BY m.user_id`

// PushTargets implements history.Outboxer in two queries of one read
// transaction: the targets with their unread counts, then their tokens.
func (s *Store) PushTargets(ctx context.Context, conv string, seq int64, users []string, now time.Time) ([]history.PushTarget, error) {
	if len(users) == 0 {
		return nil, nil
	}
	list, _ := json.Marshal(users) // strings always marshal
	var targets []history.PushTarget
	tokens := map[string][]history.PushToken{}
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		targets, err = pushTargets(ctx, tx, conv, seq, string(list), now)
		if err != nil || len(targets) == 0 {
			return err
		}
		names, _ := json.Marshal(history.TargetUsers(targets))
		rows, err := tx.QueryContext(ctx, `SELECT user_id, device, provider, token FROM push_tokens
			WHERE user_id IN (SELECT value FROM json_each(?)) ORDER BY user_id, device`, string(names))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var user string
			var pt history.PushToken
			if err := rows.Scan(&user, &pt.Device, &pt.Provider, &pt.Token); err != nil {
				return err
			}
			tokens[user] = append(tokens[user], pt)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return history.WithTokens(targets, tokens), nil
}

func pushTargets(ctx context.Context, tx *sql.Tx, conv string, seq int64, users string, now time.Time) ([]history.PushTarget, error) {
	rows, err := tx.QueryContext(ctx, pushTargetsQuery, conv, seq, users, now.UTC().Format(tsLayout))
	return collect(rows, err, func(row scanner) (history.PushTarget, error) {
		var t history.PushTarget
		err := row.Scan(&t.User, &t.Unread)
		return t, err
	})
}
