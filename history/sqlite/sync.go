package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/parley-im/parley/history"
)

// memberRows selects history.MemberRows (see scanMemberRow); the caller
// appends the condition.
const memberRows = `SELECT m.conv, c.kind, m.joined_seq, coalesce(m.left_seq, 0), c.last_seq, c.expired_before
	FROM members m JOIN conversations c ON c.id = m.conv WHERE `

func scanMemberRow(row scanner) (history.MemberRow, error) {
	var r history.MemberRow
	err := row.Scan(&r.Conv, &r.Kind, &r.Joined, &r.Left, &r.Last, &r.ExpiredBefore)
	return r, err
}

// Device implements history.Store.
func (s *Store) Device(ctx context.Context, device, user string) (history.DeviceState, error) {
	return history.DeviceOf(ctx, s.Devices, device, user)
}

// Devices implements history.Store.
func (s *Store) Devices(ctx context.Context, devs []history.DeviceRef) ([]history.DeviceState, error) {
	out := make([]history.DeviceState, len(devs))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		p := &preparedTx{tx: tx, cache: &s.writeStmts, stmts: map[string]*sql.Stmt{}}
		defer p.close()
		for i, d := range devs {
			st, err := deviceTx(ctx, p, d.Device, d.User)
			if err != nil {
				return err
			}
			out[i] = st
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.writeStmts.prepareNoted(ctx)
	return out, nil
}

// deviceTx records device and reads its state in tx (see Device).
func deviceTx(ctx context.Context, tx *preparedTx, device, user string) (history.DeviceState, error) {
	st := history.DeviceState{Cursors: map[string]int64{}}
	res, err := tx.ExecContext(ctx, `INSERT INTO devices (id, user_id, first_seen, last_seen) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, device, user, now(), now())
	if err != nil {
		return st, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		st.New = true
	} else if _, err := tx.ExecContext(ctx, `UPDATE devices SET last_seen = ? WHERE id = ?`, now(), device); err != nil {
		return st, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT conv, seq FROM cursors WHERE device = ?`, device)
	if err != nil {
		return st, err
	}
	for rows.Next() {
		var conv string
		var seq int64
		if err := rows.Scan(&conv, &seq); err != nil {
			rows.Close()
			return st, err
		}
		st.Cursors[conv] = seq
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, err
	}
	rows, err = tx.QueryContext(ctx, memberRows+`m.user_id = ? ORDER BY m.conv`, user)
	ms, err := collect(rows, err, scanMemberRow)
	if err != nil {
		return st, err
	}
	st.Convs = history.Heads(ms)
	return st, nil
}

// SaveCursors implements history.Store.
func (s *Store) SaveCursors(ctx context.Context, cs []history.Cursor) error {
	if len(cs) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, c := range cs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO cursors (device, conv, seq)
				SELECT ?1, ?2, ?3 WHERE ?4 = 0 OR EXISTS (SELECT 1 FROM sessions WHERE device = ?1 AND epoch = ?4)
				ON CONFLICT (device, conv) DO UPDATE SET seq = max(seq, ?3)`, c.Device, c.Conv, c.Seq, c.Epoch); err != nil {
				return err
			}
		}
		return nil
	})
}

// Claim implements history.Store.
func (s *Store) Claim(ctx context.Context, device string) (int64, error) {
	epochs, err := s.Claims(ctx, []string{device})
	if err != nil {
		return 0, err
	}
	return epochs[0], nil
}

// Claims implements history.Store.
func (s *Store) Claims(ctx context.Context, devices []string) ([]int64, error) {
	epochs := make([]int64, len(devices))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		p := &preparedTx{tx: tx, cache: &s.writeStmts, stmts: map[string]*sql.Stmt{}}
		defer p.close()
		seen := now()
		for i, device := range devices {
			if err := p.QueryRowContext(ctx, `INSERT INTO sessions (device, epoch, last_seen) VALUES (?1, 1, ?2)
			ON CONFLICT (device) DO UPDATE SET epoch = epoch + 1, last_seen = ?2 RETURNING epoch`, device, seen).Scan(&epochs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.writeStmts.prepareNoted(ctx)
	return epochs, nil
}

// PruneDevices implements history.Store. SQLite's single writer makes the
// transaction exclusive: no Claim or Device runs meanwhile.
func (s *Store) PruneDevices(ctx context.Context, before time.Time, connected []string) (int, error) {
	keep, err := json.Marshal(append([]string{}, connected...))
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune devices: %w", err)
	}
	var n int
	err = s.tx(ctx, func(tx *sql.Tx) error {
		if len(connected) > 0 {
			seen := now()
			if _, err := tx.ExecContext(ctx, `UPDATE devices SET last_seen = ?1 WHERE id IN (SELECT value FROM json_each(?2))`, seen, string(keep)); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE sessions SET last_seen = ?1 WHERE device IN (SELECT value FROM json_each(?2))`, seen, string(keep)); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM (SELECT id, last_seen FROM devices UNION ALL SELECT device, last_seen FROM sessions)
			WHERE id NOT IN (SELECT value FROM json_each(?2)) GROUP BY id HAVING max(last_seen) < ?1`,
			before.UTC().Format(tsLayout), string(keep))
		stale, err := collect(rows, err, scanString)
		if err != nil {
			return err
		}
		if len(stale) == 0 {
			return nil
		}
		ids, err := json.Marshal(stale)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM cursors WHERE device IN (SELECT value FROM json_each(?))`,
			`DELETE FROM sessions WHERE device IN (SELECT value FROM json_each(?))`,
			`DELETE FROM devices WHERE id IN (SELECT value FROM json_each(?))`,
		} {
			if _, err := tx.ExecContext(ctx, q, string(ids)); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	return n, err
}

// MarkRead implements history.Store.
func (s *Store) MarkRead(ctx context.Context, user, conv string, seq int64) (int64, bool, error) {
	var after int64
	var moved bool
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var read, last int64
		var member bool // no row: not a member
		switch err := tx.QueryRowContext(ctx, `SELECT m.read_seq, c.last_seq, m.left_seq IS NULL FROM members m
			JOIN conversations c ON c.id = m.conv WHERE m.conv = ? AND m.user_id = ?`, conv, user).Scan(&read, &last, &member); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		}
		var err error
		if after, moved, err = history.MarkReadRule(conv, member, read, last, seq); err != nil || !moved {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE members SET read_seq = ?, changed_xid = (SELECT n FROM changes) + 1 WHERE conv = ? AND user_id = ?`, seq, conv, user); err != nil {
			return err
		}
		if err := writeReadEvent(ctx, tx, user, conv, seq); err != nil {
			return err
		}
		return countChange(ctx, tx)
	})
	return after, moved, err
}

// SharesConversation implements history.Store.
func (s *Store) SharesConversation(ctx context.Context, a, b string) (bool, error) {
	var ok bool
	err := s.read.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members x JOIN members y ON x.conv = y.conv
		WHERE x.user_id = ? AND y.user_id = ? AND x.left_seq IS NULL AND y.left_seq IS NULL)`, a, b).Scan(&ok)
	return ok, translate(err)
}
