// Package sqlite implements history.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go, WAL mode): Parley's zero-setup default. One
// connection writes, several read; transactions that write begin IMMEDIATE, so
// sequence numbers are assigned under SQLite's single writer lock.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	sqlite3 "modernc.org/sqlite"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/migrations"
)

// FileName is the name of the database file inside the data directory.
const FileName = "parley.db"

// Store is a history.Store on an SQLite database file.
type Store struct {
	write         *sql.DB
	read          *sql.DB
	schemaVersion int64
}

var _ history.Store = (*Store)(nil)

const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// Open opens (creating when needed) the database in directory dir, applies
// pending migrations and returns the Store. log may be nil.
func Open(ctx context.Context, dir string, log *slog.Logger) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_pragma=synchronous(FULL)"
	write, err := sql.Open("sqlite", dsn+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", dsn+"&_pragma=query_only(ON)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	s := &Store{write: write, read: read, schemaVersion: migrations.Latest(migrations.SQLite())}
	if err := s.migrate(ctx, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, log *slog.Logger) error {
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.write, migrations.SQLite(), opts...)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ping checks that the database answers and carries the latest migration.
func (s *Store) Ping(ctx context.Context) error {
	var v int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if v < s.schemaVersion {
		return fmt.Errorf("sqlite: schema at version %d, want %d", v, s.schemaVersion)
	}
	return nil
}

func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return translate(err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return translate(err)
	}
	return translate(tx.Commit())
}

func translate(err error) error {
	if err == nil {
		return nil
	}
	var he *history.Error
	if errors.As(err, &he) {
		return he
	}
	if errors.Is(err, sql.ErrNoRows) {
		return history.Errorf(history.ENOTFOUND, "not found")
	}
	var se *sqlite3.Error
	if errors.As(err, &se) && se.Code()&0xff == 19 && strings.Contains(se.Error(), "UNIQUE") { // SQLITE_CONSTRAINT
		return history.Errorf(history.ECONFLICT, "already exists")
	}
	return fmt.Errorf("sqlite: %w", err)
}

const messageColumns = `conv, seq, id, coalesce(cid, ''), sender, type, body, created_at`

type scanner interface{ Scan(...any) error }

func scanMessage(row scanner) (history.Message, error) {
	var m history.Message
	var body, ts string
	if err := row.Scan(&m.Conv, &m.Seq, &m.ID, &m.CID, &m.From, &m.Type, &body, &ts); err != nil {
		return m, err
	}
	m.Body = []byte(body)
	t, err := time.Parse(tsLayout, ts)
	m.TS = t.UTC()
	return m, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func now() string { return time.Now().UTC().Format(tsLayout) }

// Append implements history.Store.
func (s *Store) Append(ctx context.Context, nm history.NewMessage) (history.Message, bool, error) {
	rs, err := s.AppendBatch(ctx, []history.NewMessage{nm})
	if err != nil {
		return history.Message{}, false, err
	}
	return rs[0].Message, rs[0].Created, rs[0].Err
}

// AppendBatch implements history.Store: one write transaction, messages in
// order.
func (s *Store) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	results := make([]history.AppendResult, len(ms))
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var ex execer = tx
		if len(ms) > 1 {
			p := &preparedTx{tx: tx, stmts: map[string]*sql.Stmt{}}
			defer p.close()
			ex = p
		}
		for i, nm := range ms {
			var version int64
			m, created, err := appendOne(ctx, ex, nm, &version)
			var he *history.Error
			if err != nil && !errors.As(err, &he) {
				return err
			}
			results[i] = history.AppendResult{Message: m, Created: created, Err: err, MemberVersion: version}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

func appendOne(ctx context.Context, tx execer, nm history.NewMessage, version *int64) (msg history.Message, created bool, err error) {
	kind, a, b, ok := history.ParseConvID(nm.Conv)
	if !ok {
		return msg, false, history.Errorf(history.EINVALID, "invalid conversation %q", nm.Conv)
	}
	if kind == history.KindDirect {
		if nm.From != a && nm.From != b {
			return msg, false, history.Errorf(history.ENOTMEMBER, "%q is not part of %s", nm.From, nm.Conv)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, kind, created_at, updated_at) VALUES (?, 'direct', ?, ?) ON CONFLICT DO NOTHING`, nm.Conv, now(), now())
		if err != nil {
			return msg, false, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?1, ?2, 'member', 0), (?1, ?3, 'member', 0)`, nm.Conv, a, b); err != nil {
				return msg, false, err
			}
		}
	}
	var last int64
	err = tx.QueryRowContext(ctx, `SELECT last_seq, member_version FROM conversations WHERE id = ?`, nm.Conv).Scan(&last, version)
	if errors.Is(err, sql.ErrNoRows) {
		return msg, false, history.Errorf(history.ENOTFOUND, "no such group %q", a)
	}
	if err != nil {
		return msg, false, err
	}
	if kind == history.KindGroup {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE conv = ? AND user_id = ? AND left_seq IS NULL`, nm.Conv, nm.From).Scan(&n); err != nil {
			return msg, false, err
		}
		if n == 0 {
			return msg, false, history.Errorf(history.ENOTMEMBER, "%q is not a member of group %q", nm.From, a)
		}
	}
	if nm.CID != "" {
		m, err := scanMessage(tx.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND sender = ? AND cid = ?`, nm.Conv, nm.From, nm.CID))
		if err == nil {
			return m, false, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return msg, false, err
		}
	}
	msg, err = insertMessage(ctx, tx, nm, last+1)
	return msg, err == nil, err
}

// execer is a transaction, or a transaction that reuses prepared statements.
type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// preparedTx prepares each statement once per transaction: a batch of sends
// runs the same few statements for every message.
type preparedTx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (p *preparedTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := p.stmts[q]; ok {
		return st, nil
	}
	st, err := p.tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	p.stmts[q] = st
	return st, nil
}

func (p *preparedTx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p *preparedTx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return p.tx.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *preparedTx) close() {
	for _, st := range p.stmts {
		st.Close()
	}
}

func insertMessage(ctx context.Context, tx execer, nm history.NewMessage, seq int64) (history.Message, error) {
	ts := nm.TS.UTC().Truncate(time.Microsecond)
	_, err := tx.ExecContext(ctx, `INSERT INTO messages (conv, seq, id, cid, sender, type, body, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		nm.Conv, seq, nm.ID, nullable(nm.CID), nm.From, nm.Type, string(nm.Body), ts.Format(tsLayout))
	if err != nil {
		return history.Message{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET last_seq = ?, updated_at = ?, changed_xid = (SELECT n FROM changes) + 1 WHERE id = ?`, seq, ts.Format(tsLayout), nm.Conv); err != nil {
		return history.Message{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE changes SET n = n + 1`); err != nil {
		return history.Message{}, err
	}
	return history.Message{Conv: nm.Conv, Seq: seq, ID: nm.ID, CID: nm.CID, From: nm.From, TS: ts, Type: nm.Type, Body: nm.Body}, nil
}

// Messages implements history.Store.
func (s *Store) Messages(ctx context.Context, conv string, after int64, limit int) ([]history.Message, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?`, conv, after, limit)
	if err != nil {
		return nil, translate(err)
	}
	defer rows.Close()
	var out []history.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, translate(err)
		}
		out = append(out, m)
	}
	return out, translate(rows.Err())
}

// CreateGroup implements history.Store.
func (s *Store) CreateGroup(ctx context.Context, g history.Group, members []history.Member, nm history.NewMessage) (history.Message, error) {
	var msg history.Message
	err := s.tx(ctx, func(tx *sql.Tx) error {
		conv := history.GroupConvID(g.ID)
		res, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, kind, created_at, updated_at) VALUES (?, 'group', ?, ?) ON CONFLICT DO NOTHING`, conv, now(), now())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return history.Errorf(history.ECONFLICT, "group %q already exists", g.ID)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE conversations SET member_version = 1 WHERE id = ?`, conv); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, created_by, created_at) VALUES (?, ?, ?, ?)`, g.ID, g.Name, g.CreatedBy, g.CreatedAt.UTC().Format(tsLayout)); err != nil {
			return err
		}
		for _, m := range members {
			if _, err := tx.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?, ?, ?, 1)`, conv, m.User, m.Role); err != nil {
				return err
			}
		}
		nm.Conv = conv
		msg, err = insertMessage(ctx, tx, nm, 1)
		return err
	})
	return msg, err
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// Group implements history.Store.
func (s *Store) Group(ctx context.Context, id string) (history.Group, []history.Member, error) {
	g, ms, err := loadGroup(ctx, s.read, id)
	return g, ms, translate(err)
}

func loadGroup(ctx context.Context, q querier, id string) (history.Group, []history.Member, error) {
	var g history.Group
	var ts string
	err := q.QueryRowContext(ctx, `SELECT g.id, g.name, g.created_by, g.created_at, c.member_version FROM groups g
		JOIN conversations c ON c.id = 'g:' || g.id WHERE g.id = ?`, id).Scan(&g.ID, &g.Name, &g.CreatedBy, &ts, &g.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return g, nil, history.Errorf(history.ENOTFOUND, "no such group %q", id)
	}
	if err != nil {
		return g, nil, err
	}
	g.CreatedAt, _ = time.Parse(tsLayout, ts)
	rows, err := q.QueryContext(ctx, `SELECT user_id, role FROM members WHERE conv = ? AND left_seq IS NULL ORDER BY user_id`, history.GroupConvID(id))
	if err != nil {
		return g, nil, err
	}
	defer rows.Close()
	var ms []history.Member
	for rows.Next() {
		var m history.Member
		if err := rows.Scan(&m.User, &m.Role); err != nil {
			return g, nil, err
		}
		ms = append(ms, m)
	}
	return g, ms, rows.Err()
}

// ChangeMember implements history.Store.
func (s *Store) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	var msg history.Message
	var after []history.Member
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, ms, err := loadGroup(ctx, tx, c.Group)
		if err != nil {
			return err
		}
		typ, err := history.CheckMemberChange(ms, c)
		if err != nil {
			return err
		}
		conv := history.GroupConvID(c.Group)
		var last int64
		if err := tx.QueryRowContext(ctx, `UPDATE conversations SET member_version = member_version + 1 WHERE id = ? RETURNING last_seq`, conv).Scan(&last); err != nil {
			return err
		}
		seq := last + 1
		switch typ {
		case history.TypeMemberAdded:
			_, err = tx.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?1, ?2, ?3, ?4)
				ON CONFLICT (conv, user_id) DO UPDATE SET role = ?3, joined_seq = ?4, left_seq = NULL`, conv, c.User, c.Role, seq)
		case history.TypeMemberRole:
			_, err = tx.ExecContext(ctx, `UPDATE members SET role = ? WHERE conv = ? AND user_id = ?`, c.Role, conv, c.User)
		default:
			_, err = tx.ExecContext(ctx, `UPDATE members SET left_seq = ? WHERE conv = ? AND user_id = ?`, seq, conv, c.User)
		}
		if err != nil {
			return err
		}
		msg, err = insertMessage(ctx, tx, history.MemberMessage(c, typ), seq)
		if err != nil {
			return err
		}
		after = history.ApplyMemberChange(ms, c, typ)
		return nil
	})
	return msg, after, err
}
