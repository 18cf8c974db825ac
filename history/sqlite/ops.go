package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/parley-im/parley/history"
)

// insertSQL inserts one message with every column; see messageArgs.
// insertMessages inserts many with the same columns.
const (
	insertMessagesHead = `INSERT INTO messages (conv, seq, id, cid, sender, type, body, created_at, reply_to, mentions, target, emoji, event, attachments)
	VALUES `
	insertMessagesRow = `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertSQL         = insertMessagesHead + insertMessagesRow
)

// messageArgs returns the arguments of insertSQL for m: its mentions as a
// JSON array (NULL: none), event set when its type is an event's
// (history.IsEvent).
func messageArgs(m history.Message) []any {
	var mentions any
	if len(m.Mentions) > 0 {
		b, _ := json.Marshal(m.Mentions) // strings always marshal
		mentions = string(b)
	}
	var reply, target, attachments any
	if len(m.Attachments) > 0 {
		b, _ := json.Marshal(m.Attachments) // strings and numbers always marshal
		attachments = string(b)
	}
	if m.ReplyTo != 0 {
		reply = m.ReplyTo
	}
	if m.Target != 0 {
		target = m.Target
	}
	return []any{m.Conv, m.Seq, m.ID, nullable(m.CID), m.From, m.Type, string(m.Body), m.TS.Format(tsLayout),
		reply, mentions, target, nullable(m.Emoji), history.IsEvent(m.Type), attachments}
}

// scanExtra completes a message scanned with messageColumns from its
// mentions (a JSON array, "" for none) and edit time ("" for none).
func scanExtra(m *history.Message, mentions, edited string) error {
	if mentions != "" {
		if err := json.Unmarshal([]byte(mentions), &m.Mentions); err != nil {
			return err
		}
	}
	if edited != "" {
		t, err := time.Parse(tsLayout, edited)
		if err != nil {
			return err
		}
		m.EditedAt = t.UTC()
	}
	return nil
}

// readOpState reads into st the messages that plan's messages reply to or
// change, and the reactions they add or remove. It reads nothing for plain
// sends.
func readOpState(ctx context.Context, ex execer, plan *history.AppendPlan, st *history.AppendState) error {
	st.Targets = map[history.SeqKey]history.TargetState{}
	st.Reactions = map[history.ReactionKey]bool{}
	for _, k := range plan.Targets {
		var t history.TargetState
		var ts string
		err := ex.QueryRowContext(ctx, `SELECT sender, type, created_at, deleted FROM messages WHERE conv = ? AND seq = ?`, k.Conv, k.Seq).Scan(&t.From, &t.Type, &ts, &t.Deleted)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		at, err := time.Parse(tsLayout, ts)
		if err != nil {
			return err
		}
		t.TS = at.UTC()
		st.Targets[k] = t
	}
	for _, k := range plan.Reactions {
		var one int
		err := ex.QueryRowContext(ctx, `SELECT 1 FROM reactions WHERE conv = ? AND seq = ? AND user_id = ? AND emoji = ?`, k.Conv, k.Seq, k.User, k.Emoji).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return err
		}
		st.Reactions[k] = true
	}
	return nil
}

// applyChanges applies what the accepted ops do to their targets, in order,
// after the batch's messages were inserted. A delete erases the body of the
// message and of its edits (their events): the store keeps JSON null; its
// reactions go too.
func applyChanges(ctx context.Context, ex execer, cs []history.Change) error {
	for _, c := range cs {
		var err error
		switch c.Op {
		case history.OpEdit:
			_, err = ex.ExecContext(ctx, `UPDATE messages SET body = ?, edited_at = ? WHERE conv = ? AND seq = ?`, string(c.Body), c.TS.Format(tsLayout), c.Conv, c.Target)
		case history.OpDelete:
			if _, err = ex.ExecContext(ctx, `UPDATE messages SET body = 'null', deleted = 1 WHERE conv = ? AND seq = ?`, c.Conv, c.Target); err == nil {
				_, err = ex.ExecContext(ctx, `UPDATE messages SET body = 'null' WHERE conv = ? AND target = ? AND type = ?`, c.Conv, c.Target, history.TypeMessageEdited)
			}
			if err == nil {
				_, err = ex.ExecContext(ctx, `DELETE FROM reactions WHERE conv = ? AND seq = ?`, c.Conv, c.Target)
			}
			if err == nil {
				err = forgetFiles(ctx, ex, c.Conv, c.Target)
			}
		case history.OpReact:
			_, err = ex.ExecContext(ctx, `INSERT INTO reactions (conv, seq, user_id, emoji, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				c.Conv, c.Target, c.User, c.Emoji, c.TS.Format(tsLayout))
		case history.OpUnreact:
			_, err = ex.ExecContext(ctx, `DELETE FROM reactions WHERE conv = ? AND seq = ? AND user_id = ? AND emoji = ?`, c.Conv, c.Target, c.User, c.Emoji)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// countsFrom counts, for user ?1 in the conversation of member row m
// (joined with its conversation c), the messages of others after the read
// marker that the user may see, not events and not deleted; the caller
// prepends count(*) (unread) or the count of those that mention the user
// (mentionsCount).
const countsFrom = ` FROM messages x
		WHERE x.conv = m.conv AND x.seq > m.read_seq AND x.seq >= m.joined_seq AND x.seq <= coalesce(m.left_seq, c.last_seq)
		AND x.sender <> ?1 AND NOT x.event AND NOT x.deleted`

// countsColumns selects the unread and mention counts of user ?1 in the
// conversation of m (see countsFrom).
const countsColumns = `(SELECT count(*)` + countsFrom + `),
	(SELECT count(*)` + countsFrom + ` AND x.mentions IS NOT NULL AND ?1 IN (SELECT value FROM json_each(x.mentions)))`

// settings returns the settings as stored: mutedUntil "" is zero.
func settings(mutedUntil string, archived, pinned bool) (history.Settings, error) {
	s := history.Settings{Archived: archived, Pinned: pinned}
	if mutedUntil != "" {
		t, err := time.Parse(tsLayout, mutedUntil)
		if err != nil {
			return s, err
		}
		s.MutedUntil = t.UTC()
	}
	return s, nil
}

// Counts implements history.Store.
func (s *Store) Counts(ctx context.Context, user, conv string) (int64, int64, error) {
	var unread, mentions int64
	err := s.read.QueryRowContext(ctx, `SELECT `+countsColumns+` FROM members m JOIN conversations c ON c.id = m.conv
		WHERE m.user_id = ?1 AND m.conv = ?2`, user, conv).Scan(&unread, &mentions)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, history.NotMember(conv)
	}
	if err != nil {
		return 0, 0, translate(err)
	}
	return unread, mentions, nil
}

// SetSettings implements history.Store. It marks the member row changed
// and counts the change, as MarkRead does, so that Changes reports the
// conversation.
func (s *Store) SetSettings(ctx context.Context, user, conv string, st history.Settings) (history.Settings, error) {
	var muted any
	if !st.MutedUntil.IsZero() {
		muted = st.MutedUntil.UTC().Format(tsLayout)
	}
	var out history.Settings
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var stored string
		var archived, pinned bool
		err := tx.QueryRowContext(ctx, `UPDATE members SET muted_until = ?3, archived = ?4, pinned = ?5, changed_xid = (SELECT n FROM changes) + 1
			WHERE conv = ?1 AND user_id = ?2 RETURNING coalesce(muted_until, ''), archived, pinned`, conv, user, muted, st.Archived, st.Pinned).Scan(&stored, &archived, &pinned)
		if errors.Is(err, sql.ErrNoRows) {
			return history.NotMember(conv)
		}
		if err != nil {
			return err
		}
		if out, err = settings(stored, archived, pinned); err != nil {
			return err
		}
		return countChange(ctx, tx)
	})
	if err != nil {
		return history.Settings{}, err
	}
	return out, nil
}

// addReactions fills in the Reactions of msgs, a page of conv's messages
// (contiguous seqs, in either order), as user sees them: one query over the
// page's seqs.
func addReactions(ctx context.Context, q querier, conv, user string, msgs []history.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	page := history.NewPageReactions(msgs)
	rows, err := q.QueryContext(ctx, `SELECT seq, emoji, count(*), max(user_id = ?4) FROM reactions
		WHERE conv = ?1 AND seq BETWEEN ?2 AND ?3 GROUP BY seq, emoji`, conv, page.Lo, page.Hi, user)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var emoji string
		var rc history.ReactionCount
		if err := rows.Scan(&seq, &emoji, &rc.Count, &rc.Me); err != nil {
			return err
		}
		page.Add(seq, emoji, rc)
	}
	return rows.Err()
}
