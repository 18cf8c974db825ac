package postgres

import (
	"context"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// Append implements history.Store.
func (s *Store) Append(ctx context.Context, nm history.NewMessage) (history.Message, bool, error) {
	rs, err := s.AppendBatch(ctx, []history.NewMessage{nm})
	if err != nil {
		return history.Message{}, false, err
	}
	return rs[0].Message, rs[0].Created, rs[0].Err
}

type cidKey struct{ conv, from, cid string }

// AppendBatch implements history.Store in two pipelined round trips plus the
// commit: first the conversations are created (direct ones on first use) and
// locked in id order, with the senders' memberships and earlier cids read;
// then the new messages are inserted with one multi-row statement and the
// conversations' last seqs set with another.
func (s *Store) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	results := make([]history.AppendResult, len(ms))
	type convInfo struct {
		kind, a, b string
		last       int64
		version    int64
		exists     bool
	}
	convs := map[string]*convInfo{}
	for i, nm := range ms {
		kind, a, b, ok := history.ParseConvID(nm.Conv)
		switch {
		case !ok:
			results[i].Err = history.Errorf(history.EINVALID, "invalid conversation %q", nm.Conv)
		case kind == history.KindDirect && nm.From != a && nm.From != b:
			results[i].Err = history.Errorf(history.ENOTMEMBER, "%q is not part of %s", nm.From, nm.Conv)
		default:
			if convs[nm.Conv] == nil {
				convs[nm.Conv] = &convInfo{kind: kind, a: a, b: b}
			}
		}
	}
	if len(convs) == 0 {
		return results, nil
	}
	ids := make([]string, 0, len(convs))
	for id := range convs {
		ids = append(ids, id)
	}
	sort.Strings(ids) // one lock order for every node: no deadlocks
	var keys []cidKey
	var kc, kf, kcid, senders []string
	for i, nm := range ms {
		if results[i].Err == nil {
			senders = append(senders, nm.From)
			if nm.CID != "" {
				keys = append(keys, cidKey{nm.Conv, nm.From, nm.CID})
				kc, kf, kcid = append(kc, nm.Conv), append(kf, nm.From), append(kcid, nm.CID)
			}
		}
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		batch := &pgx.Batch{}
		for _, id := range ids {
			c := convs[id]
			if c.kind == history.KindDirect {
				batch.Queue(`WITH ins AS (INSERT INTO conversations (id, kind) VALUES ($1, 'direct') ON CONFLICT DO NOTHING RETURNING id)
					INSERT INTO members (conv, user_id, role, joined_seq) SELECT id, u, 'member', 0 FROM ins, unnest($2::text[]) u`, id, []string{c.a, c.b})
			}
		}
		batch.Queue(`SELECT id, last_seq, member_version FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id string
				var last, version int64
				if err := rows.Scan(&id, &last, &version); err != nil {
					return err
				}
				convs[id].last, convs[id].version, convs[id].exists = last, version, true
			}
			return rows.Err()
		})
		members := map[[2]string]bool{}
		batch.Queue(`SELECT conv, user_id FROM members WHERE conv = ANY($1) AND user_id = ANY($2) AND left_seq IS NULL`, ids, senders).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var conv, user string
				if err := rows.Scan(&conv, &user); err != nil {
					return err
				}
				members[[2]string{conv, user}] = true
			}
			return rows.Err()
		})
		earlier := map[cidKey]history.Message{}
		if len(keys) > 0 {
			batch.Queue(`SELECT `+messageColumns+` FROM messages WHERE (conv, sender, cid) IN
				(SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, kc, kf, kcid).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					m, err := scanMessage(rows)
					if err != nil {
						return err
					}
					earlier[cidKey{m.Conv, m.From, m.CID}] = m
				}
				return rows.Err()
			})
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return err
		}

		var ins struct {
			conv, id, cid, from, typ, body []string
			seq                            []int64
			ts                             []time.Time
		}
		for i, nm := range ms {
			if results[i].Err != nil {
				continue
			}
			c := convs[nm.Conv]
			switch {
			case !c.exists:
				results[i].Err = history.Errorf(history.ENOTFOUND, "no such group %q", c.a)
				continue
			case !members[[2]string{nm.Conv, nm.From}]:
				results[i].Err = history.Errorf(history.ENOTMEMBER, "%q is not a member of %s", nm.From, nm.Conv)
				continue
			}
			results[i].MemberVersion = c.version
			if nm.CID != "" {
				if m, ok := earlier[cidKey{nm.Conv, nm.From, nm.CID}]; ok {
					results[i].Message = m
					continue
				}
			}
			c.last++
			m := history.Message{Conv: nm.Conv, Seq: c.last, ID: nm.ID, CID: nm.CID, From: nm.From,
				TS: nm.TS.UTC().Truncate(time.Microsecond), Type: nm.Type, Body: nm.Body}
			results[i] = history.AppendResult{Message: m, Created: true, MemberVersion: c.version}
			if nm.CID != "" {
				earlier[cidKey{nm.Conv, nm.From, nm.CID}] = m // a repeat later in this batch
			}
			ins.conv, ins.seq, ins.id = append(ins.conv, m.Conv), append(ins.seq, m.Seq), append(ins.id, m.ID)
			ins.cid, ins.from, ins.typ = append(ins.cid, m.CID), append(ins.from, m.From), append(ins.typ, m.Type)
			ins.body, ins.ts = append(ins.body, string(m.Body)), append(ins.ts, m.TS)
		}
		if len(ins.conv) == 0 {
			return nil
		}
		var ucID []string
		var ucSeq []int64
		var ucTS []time.Time
		done := map[string]bool{}
		for i := len(ins.conv) - 1; i >= 0; i-- { // the last message of each conversation
			if !done[ins.conv[i]] {
				done[ins.conv[i]] = true
				ucID, ucSeq, ucTS = append(ucID, ins.conv[i]), append(ucSeq, ins.seq[i]), append(ucTS, ins.ts[i])
			}
		}
		b2 := &pgx.Batch{}
		b2.Queue(`INSERT INTO messages (conv, seq, id, cid, sender, type, body, created_at)
			SELECT c, s, i, nullif(ci, ''), f, t, b::json, ts FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[])
			AS x(c, s, i, ci, f, t, b, ts)`, ins.conv, ins.seq, ins.id, ins.cid, ins.from, ins.typ, ins.body, ins.ts)
		b2.Queue(`UPDATE conversations SET last_seq = x.s, updated_at = x.ts, changed_xid = pg_current_xact_id()::text::bigint
			FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS x(id, s, ts) WHERE conversations.id = x.id`, ucID, ucSeq, ucTS)
		return tx.SendBatch(ctx, b2).Close()
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}
