package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// Append implements history.Store.
func (s *Store) Append(ctx context.Context, nm history.NewMessage) (history.Message, bool, error) {
	return history.AppendOne(ctx, s, nm)
}

// AppendBatch implements history.Store in two pipelined round trips plus the
// commit: first the conversations are created (direct ones on first use) and
// locked in id order, with the senders' memberships, earlier cids, the
// messages replied to or changed and the reactions added or removed read;
// then the new messages are inserted with one multi-row statement, the ops'
// changes applied and the conversations' last seqs set with another, and,
// last, the outbox rows of the new messages written (see queueOutbox).
// history.AppendPlan decides what each message becomes.
func (s *Store) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	plan := history.PlanAppend(ms)
	ids := make([]string, len(plan.Convs)) // sorted: one lock order for every node, no deadlocks
	for i, c := range plan.Convs {
		ids[i] = c.ID
	}
	if len(ids) == 0 {
		return plan.Results, nil
	}
	var mc, mu []string
	for _, k := range plan.Members {
		mc, mu = append(mc, k.Conv), append(mu, k.User)
	}
	var kc, kf, kcid []string
	for _, k := range plan.CIDs {
		kc, kf, kcid = append(kc, k.Conv), append(kf, k.From), append(kcid, k.CID)
	}
	st := history.AppendState{Convs: map[string]history.ConvState{}, Members: map[history.MemberKey]history.MemberState{}, Earlier: map[history.CIDKey]history.Message{}}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, c := range plan.Convs {
			if c.Kind == history.KindDirect {
				batch.Queue(`WITH ins AS (INSERT INTO conversations (id, kind) VALUES ($1, 'direct') ON CONFLICT DO NOTHING RETURNING id)
					INSERT INTO members (conv, user_id, role, joined_seq) SELECT id, u, 'member', 0 FROM ins, unnest($2::text[]) u`, c.ID, []string{c.A, c.B})
			}
		}
		batch.Queue(`SELECT id, last_seq, member_version FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
			var id string
			var cs history.ConvState
			_, err := pgx.ForEachRow(rows, []any{&id, &cs.Last, &cs.Version}, func() error {
				st.Convs[id] = cs
				return nil
			})
			return err
		})
		if len(mc) > 0 {
			batch.Queue(`SELECT conv, user_id, role, joined_seq FROM members WHERE (conv, user_id) IN
				(SELECT * FROM unnest($1::text[], $2::text[])) AND left_seq IS NULL`, mc, mu).Query(func(rows pgx.Rows) error {
				var k history.MemberKey
				var ms history.MemberState
				_, err := pgx.ForEachRow(rows, []any{&k.Conv, &k.User, &ms.Role, &ms.Joined}, func() error {
					st.Members[k] = ms
					return nil
				})
				return err
			})
		}
		if len(kc) > 0 {
			batch.Queue(`SELECT `+messageColumns+` FROM messages WHERE (conv, sender, cid) IN
				(SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, kc, kf, kcid).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					m, err := scanMessage(rows)
					if err != nil {
						return err
					}
					st.Earlier[history.CIDKey{Conv: m.Conv, From: m.From, CID: m.CID}] = m
				}
				return rows.Err()
			})
		}
		queueOpReads(batch, plan, &st)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}

		insert, last := plan.Assign(st)
		if len(insert) == 0 {
			return nil
		}
		ucID, ucSeq, ucTS := make([]string, len(last)), make([]int64, len(last)), make([]time.Time, len(last))
		for i, l := range last {
			ucID[i], ucSeq[i], ucTS[i] = l.Conv, l.Seq, l.TS
		}
		b2 := &pgx.Batch{}
		queueInsert(b2, insert)
		queueChanges(b2, plan.Changes)
		b2.Queue(`UPDATE conversations SET last_seq = x.s, updated_at = x.ts, changed_xid = pg_current_xact_id()::text::bigint
			FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS x(id, s, ts) WHERE conversations.id = x.id`, ucID, ucSeq, ucTS)
		// Last: the outbox lock and rows (see queueOutbox), in this
		// pipelined batch, held from here to COMMIT.
		queueOutbox(b2, messageRows(insert...))
		return tx.SendBatch(ctx, b2).Close()
	})
	if err != nil {
		return nil, err
	}
	return plan.Results, nil
}
