package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// insertMessages inserts messages of x(...) from unnest of 14 arrays (see
// queueInsert). A message's mentions arrive as a JSON array (NULL: none),
// its attachments as a JSON array (NULL: none).
const insertMessages = `INSERT INTO messages (conv, seq, id, cid, sender, type, body, created_at, reply_to, mentions, target, emoji, event, attachments)
	SELECT c, s, i, nullif(ci, ''), f, t, b::json, ts, nullif(r, 0),
		CASE WHEN mj IS NOT NULL THEN (SELECT array_agg(e.v ORDER BY e.n) FROM json_array_elements_text(mj::json) WITH ORDINALITY AS e(v, n)) END,
		nullif(tg, 0), nullif(em, ''), ev, aj::json
	FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[],
		$9::bigint[], $10::text[], $11::bigint[], $12::text[], $13::bool[], $14::text[])
	AS x(c, s, i, ci, f, t, b, ts, r, mj, tg, em, ev, aj)`

// queueInsert queues on batch one statement that inserts ms, each with
// event set when its type is an event's (history.IsEvent).
func queueInsert(batch *pgx.Batch, ms []history.Message) {
	n := len(ms)
	conv, id, cid, from, typ, body := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seq, reply, target := make([]int64, n), make([]int64, n), make([]int64, n)
	ts := make([]time.Time, n)
	mentions := make([]*string, n)
	emoji := make([]string, n)
	event := make([]bool, n)
	attachments := make([]*string, n)
	var fileConv, fileID []string
	var fileSeq []int64
	for i, m := range ms {
		if len(m.Attachments) > 0 {
			b, _ := json.Marshal(m.Attachments) // strings and numbers always marshal
			s := string(b)
			attachments[i] = &s
			for _, a := range m.Attachments {
				fileConv, fileSeq, fileID = append(fileConv, m.Conv), append(fileSeq, m.Seq), append(fileID, a.ID)
			}
		}
		conv[i], seq[i], id[i], cid[i], from[i], typ[i], body[i], ts[i] = m.Conv, m.Seq, m.ID, m.CID, m.From, m.Type, string(m.Body), m.TS
		reply[i], target[i], emoji[i], event[i] = m.ReplyTo, m.Target, m.Emoji, history.IsEvent(m.Type)
		if len(m.Mentions) > 0 {
			b, _ := json.Marshal(m.Mentions) // strings always marshal
			s := string(b)
			mentions[i] = &s
		}
	}
	batch.Queue(insertMessages, conv, seq, id, cid, from, typ, body, ts, reply, mentions, target, emoji, event, attachments)
	if len(fileID) > 0 {
		queueFiles(batch, fileConv, fileSeq, fileID)
	}
}

// queueOpReads queues on batch, after the conversation locks, the reads of
// the messages that plan's messages reply to or change, and of the
// reactions they add or remove, into st. It queues nothing for plain sends.
func queueOpReads(batch *pgx.Batch, plan *history.AppendPlan, st *history.AppendState) {
	st.Targets = map[history.SeqKey]history.TargetState{}
	st.Reactions = map[history.ReactionKey]bool{}
	if n := len(plan.Targets); n > 0 {
		convs, seqs := make([]string, n), make([]int64, n)
		for i, k := range plan.Targets {
			convs[i], seqs[i] = k.Conv, k.Seq
		}
		batch.Queue(`SELECT conv, seq, sender, type, created_at, deleted FROM messages WHERE (conv, seq) IN
			(SELECT * FROM unnest($1::text[], $2::bigint[]))`, convs, seqs).Query(func(rows pgx.Rows) error {
			var k history.SeqKey
			var t history.TargetState
			_, err := pgx.ForEachRow(rows, []any{&k.Conv, &k.Seq, &t.From, &t.Type, &t.TS, &t.Deleted}, func() error {
				t.TS = t.TS.UTC()
				st.Targets[k] = t
				return nil
			})
			return err
		})
	}
	if n := len(plan.Reactions); n > 0 {
		convs, seqs, users, emoji := make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
		for i, k := range plan.Reactions {
			convs[i], seqs[i], users[i], emoji[i] = k.Conv, k.Seq, k.User, k.Emoji
		}
		batch.Queue(`SELECT conv, seq, user_id, emoji FROM reactions WHERE (conv, seq, user_id, emoji) IN
			(SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]))`, convs, seqs, users, emoji).Query(func(rows pgx.Rows) error {
			var k history.ReactionKey
			_, err := pgx.ForEachRow(rows, []any{&k.Conv, &k.Seq, &k.User, &k.Emoji}, func() error {
				st.Reactions[k] = true
				return nil
			})
			return err
		})
	}
}

// queueChanges queues on batch, after the insert of the batch's messages,
// what the accepted ops do to their targets, in order. A delete erases the
// body of the message and of its edits (their events): the store keeps JSON
// null; its reactions go too.
func queueChanges(batch *pgx.Batch, cs []history.Change) {
	for _, c := range cs {
		switch c.Op {
		case history.OpEdit:
			batch.Queue(`UPDATE messages SET body = $3::json, edited_at = $4 WHERE conv = $1 AND seq = $2`, c.Conv, c.Target, string(c.Body), c.TS)
		case history.OpDelete:
			batch.Queue(`UPDATE messages SET body = 'null', deleted = true WHERE conv = $1 AND seq = $2`, c.Conv, c.Target)
			batch.Queue(`UPDATE messages SET body = 'null' WHERE conv = $1 AND target = $2 AND type = $3`, c.Conv, c.Target, history.TypeMessageEdited)
			batch.Queue(`DELETE FROM reactions WHERE conv = $1 AND seq = $2`, c.Conv, c.Target)
			queueForgetFiles(batch, c.Conv, c.Target)
		case history.OpReact:
			batch.Queue(`INSERT INTO reactions (conv, seq, user_id, emoji, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
				c.Conv, c.Target, c.User, c.Emoji, c.TS)
		case history.OpUnreact:
			batch.Queue(`DELETE FROM reactions WHERE conv = $1 AND seq = $2 AND user_id = $3 AND emoji = $4`, c.Conv, c.Target, c.User, c.Emoji)
		}
	}
}

// countsColumn is an array of two counts of user $1 in the conversation of
// member row m (joined with its conversation c): the messages of others
// after the read marker that the user may see, not events and not deleted,
// and those of them that mention the user.
const countsColumn = `(SELECT ARRAY[count(*), count(*) FILTER (WHERE $1 = ANY(x.mentions))] FROM messages x
		WHERE x.conv = m.conv AND x.seq > m.read_seq AND x.seq >= m.joined_seq AND x.seq <= coalesce(m.left_seq, c.last_seq)
		AND x.sender <> $1 AND NOT x.event AND NOT x.deleted)`

// settings returns the settings as stored: mutedUntil NULL is zero.
func settings(mutedUntil *time.Time, archived, pinned bool) history.Settings {
	s := history.Settings{Archived: archived, Pinned: pinned}
	if mutedUntil != nil {
		s.MutedUntil = mutedUntil.UTC()
	}
	return s
}

// Counts implements history.Store.
func (s *Store) Counts(ctx context.Context, user, conv string) (int64, int64, error) {
	var counts []int64
	err := s.pool.QueryRow(ctx, `SELECT `+countsColumn+` FROM members m JOIN conversations c ON c.id = m.conv
		WHERE m.user_id = $1 AND m.conv = $2`, user, conv).Scan(&counts)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, history.NotMember(conv)
	}
	if err != nil {
		return 0, 0, translate(err)
	}
	return counts[0], counts[1], nil
}

// SetSettings implements history.Store. It marks the member row changed,
// as MarkRead does, so that Changes reports the conversation.
func (s *Store) SetSettings(ctx context.Context, user, conv string, st history.Settings) (history.Settings, error) {
	var muted *time.Time
	if !st.MutedUntil.IsZero() {
		t := st.MutedUntil.UTC().Truncate(time.Microsecond)
		muted = &t
	}
	var out history.Settings
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var archived, pinned bool
		err := tx.QueryRow(ctx, `UPDATE members SET muted_until = $3, archived = $4, pinned = $5, changed_xid = pg_current_xact_id()::text::bigint
			WHERE conv = $1 AND user_id = $2 RETURNING muted_until, archived, pinned`, conv, user, muted, st.Archived, st.Pinned).Scan(&muted, &archived, &pinned)
		if errors.Is(err, pgx.ErrNoRows) {
			return history.NotMember(conv)
		}
		out = settings(muted, archived, pinned)
		return err
	})
	if err != nil {
		return history.Settings{}, err
	}
	return out, nil
}

// addReactions fills in the Reactions of msgs, a page of conv's messages
// (contiguous seqs, in either order), as user sees them: one query over the
// page's seqs.
func addReactions(ctx context.Context, tx pgx.Tx, conv, user string, msgs []history.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	page := history.NewPageReactions(msgs)
	rows, err := tx.Query(ctx, `SELECT seq, emoji, count(*), bool_or(user_id = $4) FROM reactions
		WHERE conv = $1 AND seq BETWEEN $2 AND $3 GROUP BY seq, emoji`, conv, page.Lo, page.Hi, user)
	if err != nil {
		return err
	}
	var seq int64
	var emoji string
	var rc history.ReactionCount
	_, err = pgx.ForEachRow(rows, []any{&seq, &emoji, &rc.Count, &rc.Me}, func() error {
		page.Add(seq, emoji, rc)
		return nil
	})
	return err
}

// lastMessageColumns are messageColumns of a message joined as lm with LEFT
// JOIN (a view's last message, an outbox event's message): all NULL when
// there is none. A lastMessage reads them.
const lastMessageColumns = `lm.conv, lm.seq, lm.id, coalesce(lm.cid, ''), lm.sender, lm.type, lm.body::text, lm.created_at,
	coalesce(lm.reply_to, 0), lm.mentions, coalesce(lm.target, 0), coalesce(lm.emoji, ''), lm.edited_at, lm.deleted, lm.attachments::text`

// lastMessage holds the scan targets of lastMessageColumns: all NULL when
// the user sees no message.
type lastMessage struct {
	conv, id, cid, from, typ, body, emoji *string
	seq, reply, target                    *int64
	mentions                              []string
	ts, edited                            *time.Time
	deleted                               *bool
	attachments                           *string // JSON, as messageColumns
}

func (l *lastMessage) targets() []any {
	return []any{&l.conv, &l.seq, &l.id, &l.cid, &l.from, &l.typ, &l.body, &l.ts, &l.reply, &l.mentions, &l.target, &l.emoji, &l.edited, &l.deleted, &l.attachments}
}

// message returns the scanned message, nil when there is none.
func (l *lastMessage) message() *history.Message {
	if l.conv == nil {
		return nil
	}
	m := &history.Message{Conv: *l.conv, Seq: *l.seq, ID: *l.id, CID: *l.cid, From: *l.from, Type: *l.typ, Body: []byte(*l.body), TS: l.ts.UTC(),
		ReplyTo: *l.reply, Mentions: slices.Clone(l.mentions), Target: *l.target, Emoji: *l.emoji, Deleted: *l.deleted}
	if l.edited != nil {
		m.EditedAt = l.edited.UTC()
	}
	if l.attachments != nil {
		_ = json.Unmarshal([]byte(*l.attachments), &m.Attachments) // written by insertMessages
	}
	return m
}
