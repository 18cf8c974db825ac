package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/history"
)

// Device implements history.Store.
func (s *Store) Device(ctx context.Context, device, user string) (history.DeviceState, error) {
	return history.DeviceOf(ctx, s.Devices, device, user)
}

// Devices implements history.Store: one transaction, one round trip (the
// statements of every device go in one pipelined batch).
func (s *Store) Devices(ctx context.Context, devs []history.DeviceRef) ([]history.DeviceState, error) {
	out := make([]history.DeviceState, len(devs))
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for i, d := range devs {
			st := &out[i]
			st.Cursors = map[string]int64{}
			// xmax = 0 holds for a freshly inserted row, not for an updated one.
			b.Queue(`INSERT INTO devices (id, user_id) VALUES ($1, $2)
				ON CONFLICT (id) DO UPDATE SET last_seen = now() RETURNING (xmax = 0)`, d.Device, d.User).
				QueryRow(func(row pgx.Row) error { return row.Scan(&st.New) })
			b.Queue(`SELECT conv, seq FROM cursors WHERE device = $1`, d.Device).Query(func(rows pgx.Rows) error {
				var conv string
				var seq int64
				_, err := pgx.ForEachRow(rows, []any{&conv, &seq}, func() error {
					st.Cursors[conv] = seq
					return nil
				})
				return err
			})
			b.Queue(memberRows+`m.user_id = $1 ORDER BY m.conv`, d.User).Query(func(rows pgx.Rows) error {
				ms, err := pgx.CollectRows(rows, pgx.RowToStructByPos[history.MemberRow])
				st.Convs = history.Heads(ms)
				return err
			})
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SaveCursors implements history.Store.
func (s *Store) SaveCursors(ctx context.Context, cs []history.Cursor) error {
	if len(cs) == 0 {
		return nil
	}
	devices, convs := make([]string, len(cs)), make([]string, len(cs))
	seqs, epochs := make([]int64, len(cs)), make([]int64, len(cs))
	for i, c := range cs {
		devices[i], convs[i], seqs[i], epochs[i] = c.Device, c.Conv, c.Seq, c.Epoch
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO cursors (device, conv, seq)
		SELECT x.d, x.c, x.s FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS x(d, c, s, e)
		WHERE x.e = 0 OR EXISTS (SELECT 1 FROM sessions WHERE sessions.device = x.d AND sessions.epoch = x.e)
		ON CONFLICT (device, conv) DO UPDATE SET seq = GREATEST(cursors.seq, EXCLUDED.seq)`, devices, convs, seqs, epochs)
	return translate(err)
}

// claimQuery starts a new session epoch of $1.
const claimQuery = `INSERT INTO sessions (device, epoch, last_seen) VALUES ($1, 1, now())
	ON CONFLICT (device) DO UPDATE SET epoch = sessions.epoch + 1, last_seen = now() RETURNING epoch`

// Claim implements history.Store.
func (s *Store) Claim(ctx context.Context, device string) (int64, error) {
	var epoch int64
	err := s.pool.QueryRow(ctx, claimQuery, device).Scan(&epoch)
	return epoch, translate(err)
}

// Claims implements history.Store: one transaction, one round trip.
func (s *Store) Claims(ctx context.Context, devices []string) ([]int64, error) {
	epochs := make([]int64, len(devices))
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for i, device := range devices {
			b.Queue(claimQuery, device).QueryRow(func(row pgx.Row) error { return row.Scan(&epochs[i]) })
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return nil, err
	}
	return epochs, nil
}

// pruneQuery forgets the devices seen before $1 and not in $2. It locks the
// stale devices and sessions rows and skips those another transaction holds
// (a Claim or Device in progress: that device is being seen). A device is
// forgotten only when every row it has was locked here: a Claim or Device
// that comes after waits for the commit and finds a new device, never half
// of an old one.
const pruneQuery = `WITH d AS (
		SELECT id FROM devices WHERE last_seen < $1 AND id <> ALL($2) FOR UPDATE SKIP LOCKED
	), s AS (
		SELECT device AS id FROM sessions WHERE last_seen < $1 AND device <> ALL($2) FOR UPDATE SKIP LOCKED
	), stale AS (
		SELECT x.id FROM (SELECT id FROM d UNION SELECT id FROM s) x
		WHERE (x.id IN (SELECT id FROM d) OR NOT EXISTS (SELECT 1 FROM devices WHERE devices.id = x.id))
		AND (x.id IN (SELECT id FROM s) OR NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.device = x.id))
	), gone_cursors AS (
		DELETE FROM cursors WHERE device IN (SELECT id FROM stale)
	), gone_sessions AS (
		DELETE FROM sessions WHERE device IN (SELECT id FROM stale)
	), gone_devices AS (
		DELETE FROM devices WHERE id IN (SELECT id FROM stale)
	)
	SELECT count(*) FROM stale`

// PruneDevices implements history.Store.
func (s *Store) PruneDevices(ctx context.Context, before time.Time, connected []string) (int, error) {
	// Sorted, so that nodes touching the same devices lock them in one order;
	// never nil, which would encode as NULL and make "<> ALL" match nothing.
	connected = slices.Sorted(slices.Values(connected))
	if connected == nil {
		connected = []string{}
	}
	var n int
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if len(connected) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE devices SET last_seen = now() WHERE id = ANY($1)`, connected); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE sessions SET last_seen = now() WHERE device = ANY($1)`, connected); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, pruneQuery, before, connected).Scan(&n)
	})
	return n, err
}

// MarkRead implements history.Store.
func (s *Store) MarkRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error) {
	var after int64
	var moved bool
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var read, last int64
		member := true
		err := tx.QueryRow(ctx, `SELECT m.read_seq, c.last_seq, m.left_seq IS NULL FROM members m JOIN conversations c ON c.id = m.conv
			WHERE m.conv = $1 AND m.user_id = $2 FOR UPDATE OF m`, conv, user).Scan(&read, &last, &member)
		if errors.Is(err, pgx.ErrNoRows) {
			member = false
		} else if err != nil {
			return err
		}
		if after, moved, err = history.MarkReadRule(conv, member, read, last, seq); err != nil || !moved {
			return err
		}
		// The marker and its outbox row (last: see queueOutbox) in one round trip.
		batch := &pgx.Batch{}
		batch.Queue(`UPDATE members SET read_seq = $3, changed_xid = pg_current_xact_id()::text::bigint WHERE conv = $1 AND user_id = $2`, conv, user, seq)
		now := time.Now()
		queueOutbox(batch, []outboxRow{{id: history.NewID(now), kind: history.OutboxRead, conv: conv, seq: seq, user: user, ts: now}})
		return tx.SendBatch(ctx, batch).Close()
	})
	return after, moved, err
}

// SharesConversation implements history.Store.
func (s *Store) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM members x JOIN members y ON x.conv = y.conv
		WHERE x.user_id = $1 AND y.user_id = $2 AND x.left_seq IS NULL AND y.left_seq IS NULL)`, a, b).Scan(&ok)
	return ok, translate(err)
}
