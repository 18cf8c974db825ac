// Package sqlite implements history.Store on an embedded SQLite database
// (modernc.org/sqlite, pure Go, WAL mode): Parley's zero-setup default. One
// connection writes, several read; transactions that write begin IMMEDIATE, so
// sequence numbers are assigned under SQLite's single writer lock.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
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
	"github.com/parley-im/parley/history/internal/migrate"
	"github.com/parley-im/parley/migrations"
)

// FileName is the name of the database file inside the data directory.
const FileName = "parley.db"

// Store is a history.Store on an SQLite database file.
type Store struct {
	write         *sql.DB
	read          *sql.DB
	schemaVersion int64
	// writeStmts and readStmts are the hot statements, prepared once.
	writeStmts, readStmts stmts
}

var _ history.Store = (*Store)(nil)

const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// Open opens (creating when needed) the database in directory dir, applies
// pending migrations and returns the Store. log may be nil. A directory that
// cannot be created and a file that is not an SQLite database are errors
// that name the path.
func Open(ctx context.Context, dir string, log *slog.Logger) (*Store, error) {
	s, err := open(ctx, dir)
	if err != nil {
		return nil, err
	}
	if _, err := s.migrate(ctx, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the pending migrations to the database in directory dir
// (creating it when needed), closes it and says what it did.
func Migrate(ctx context.Context, dir string, log *slog.Logger) (migrations.Report, error) {
	s, err := open(ctx, dir)
	if err != nil {
		return migrations.Report{}, err
	}
	r, err := s.migrate(ctx, log)
	return r, errors.Join(err, s.Close())
}

// open opens the database in dir and checks that it is one.
func open(ctx context.Context, dir string) (*Store, error) {
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
	s := &Store{write: write, read: read, schemaVersion: migrations.Latest(migrations.SQLite()),
		writeStmts: stmts{db: write}, readStmts: stmts{db: read}}
	// Connecting runs the pragmas, which read the file: a file that is not
	// a database (or cannot be opened) fails here, named.
	var n int64
	if err := write.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master").Scan(&n); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context, log *slog.Logger) (migrations.Report, error) {
	return migrate.Up(ctx, "sqlite", goose.DialectSQLite3, s.write, migrations.SQLite(), log)
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.readStmts.close(), s.writeStmts.close(), s.read.Close(), s.write.Close())
}

// Ping checks that the database answers and carries the latest migration.
func (s *Store) Ping(ctx context.Context) error {
	return migrations.Ping(ctx, "sqlite", s.schemaVersion, func(ctx context.Context, q string, v *int64) error {
		return s.read.QueryRowContext(ctx, q).Scan(v)
	})
}

// tx runs fn in a write transaction on the one writing connection and
// translates driver errors at one boundary.
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

// readTx runs fn in a read-only transaction on a reading connection, the
// twin of the postgres store's snapshot: every statement of fn sees one
// snapshot of the database (WAL), and rows fn streams to a callback are read
// while the transaction is still open. Driver errors are translated at one
// boundary; the transaction is rolled back, having nothing to commit.
func (s *Store) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return translate(err)
	}
	defer tx.Rollback()
	return translate(fn(tx))
}

// translate maps driver errors to history errors at one boundary: a
// UNIQUE constraint violation is ECONFLICT.
func translate(err error) error {
	if out, ok := history.Translate(err, sql.ErrNoRows); ok {
		return out
	}
	var se *sqlite3.Error
	if errors.As(err, &se) && se.Code()&0xff == 19 && strings.Contains(se.Error(), "UNIQUE") { // SQLITE_CONSTRAINT
		return history.Errorf(history.ECONFLICT, "already exists")
	}
	return fmt.Errorf("sqlite: %w", err)
}

const messageColumns = `conv, seq, id, coalesce(cid, ''), sender, type, body, created_at,
	coalesce(reply_to, 0), coalesce(mentions, ''), coalesce(target, 0), coalesce(emoji, ''), coalesce(edited_at, ''), deleted, coalesce(attachments, '')`

type scanner interface{ Scan(...any) error }

func scanMessage(row scanner) (history.Message, error) {
	var m history.Message
	var body, ts, mentions, edited, attachments string
	if err := row.Scan(&m.Conv, &m.Seq, &m.ID, &m.CID, &m.From, &m.Type, &body, &ts,
		&m.ReplyTo, &mentions, &m.Target, &m.Emoji, &edited, &m.Deleted, &attachments); err != nil {
		return m, err
	}
	if attachments != "" {
		if err := json.Unmarshal([]byte(attachments), &m.Attachments); err != nil {
			return m, err
		}
	}
	m.Body = []byte(body)
	if err := scanExtra(&m, mentions, edited); err != nil {
		return m, err
	}
	t, err := time.Parse(tsLayout, ts)
	m.TS = t.UTC()
	return m, err
}

// lastMessageColumns are messageColumns of a message joined as lm with LEFT
// JOIN (a view's last message, an outbox event's message): all NULL when
// there is none. A lastMessage reads them.
const lastMessageColumns = `lm.conv, lm.seq, lm.id, coalesce(lm.cid, ''), lm.sender, lm.type, lm.body, lm.created_at,
	coalesce(lm.reply_to, 0), coalesce(lm.mentions, ''), coalesce(lm.target, 0), coalesce(lm.emoji, ''), coalesce(lm.edited_at, ''), lm.deleted, coalesce(lm.attachments, '')`

// lastMessage holds the scan targets of lastMessageColumns.
type lastMessage struct {
	conv, id, cid, from, typ, body, ts, mentions, emoji, edited, files sql.NullString
	seq, reply, target                                                 sql.NullInt64
	deleted                                                            sql.NullBool
}

// targets returns where Scan writes lastMessageColumns.
func (l *lastMessage) targets() []any {
	return []any{&l.conv, &l.seq, &l.id, &l.cid, &l.from, &l.typ, &l.body, &l.ts,
		&l.reply, &l.mentions, &l.target, &l.emoji, &l.edited, &l.deleted, &l.files}
}

// message returns the joined message, nil when there was none.
func (l *lastMessage) message() (*history.Message, error) {
	if !l.conv.Valid {
		return nil, nil
	}
	ts, err := time.Parse(tsLayout, l.ts.String)
	if err != nil {
		return nil, err
	}
	m := &history.Message{Conv: l.conv.String, Seq: l.seq.Int64, ID: l.id.String, CID: l.cid.String,
		From: l.from.String, Type: l.typ.String, Body: []byte(l.body.String), TS: ts.UTC(),
		ReplyTo: l.reply.Int64, Target: l.target.Int64, Emoji: l.emoji.String, Deleted: l.deleted.Bool}
	if err := scanExtra(m, l.mentions.String, l.edited.String); err != nil {
		return nil, err
	}
	if err := scanAttachments(m, l.files.String); err != nil {
		return nil, err
	}
	return m, nil
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
	return history.AppendOne(ctx, s, nm)
}

// AppendBatch implements history.Store: one write transaction, whose
// outcome history.AppendPlan decides. SQLite's single writer makes the
// transaction exclusive, so there is nothing to lock.
func (s *Store) AppendBatch(ctx context.Context, ms []history.NewMessage) ([]history.AppendResult, error) {
	plan := history.PlanAppend(ms)
	if len(plan.Convs) == 0 {
		return plan.Results, nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		p := &preparedTx{tx: tx, cache: &s.writeStmts, stmts: map[string]*sql.Stmt{}}
		defer p.close()
		var ex execer = p
		st, err := readAppendState(ctx, ex, plan)
		if err != nil {
			return err
		}
		insert, last := plan.Assign(st)
		if err := insertMessages(ctx, ex, insert); err != nil {
			return err
		}
		for _, m := range insert {
			if err := insertFiles(ctx, ex, m); err != nil {
				return err
			}
		}
		if err := writeMessageEvents(ctx, ex, insert...); err != nil {
			return err
		}
		if err := applyChanges(ctx, ex, plan.Changes); err != nil {
			return err
		}
		for _, l := range last {
			if err := moveConv(ctx, ex, l); err != nil {
				return err
			}
		}
		if len(last) > 0 {
			return countChange(ctx, ex)
		}
		return nil
	})
	s.writeStmts.prepareNoted(ctx)
	if err != nil {
		return nil, err
	}
	return plan.Results, nil
}

// readAppendState creates the direct conversations of plan that do not
// exist yet and reads what plan.Assign needs.
func readAppendState(ctx context.Context, ex execer, plan *history.AppendPlan) (history.AppendState, error) {
	st := history.AppendState{Convs: map[string]history.ConvState{}, Members: map[history.MemberKey]history.MemberState{}, Earlier: map[history.CIDKey]history.Message{}}
	for _, c := range plan.Convs {
		if c.Kind == history.KindDirect {
			res, err := ex.ExecContext(ctx, `INSERT INTO conversations (id, kind, created_at, updated_at) VALUES (?, 'direct', ?, ?) ON CONFLICT DO NOTHING`, c.ID, now(), now())
			if err != nil {
				return st, err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				if _, err := ex.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?1, ?2, 'member', 0), (?1, ?3, 'member', 0)`, c.ID, c.A, c.B); err != nil {
					return st, err
				}
			}
		}
		var cs history.ConvState
		err := ex.QueryRowContext(ctx, `SELECT last_seq, member_version FROM conversations WHERE id = ?`, c.ID).Scan(&cs.Last, &cs.Version)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return st, err
		}
		st.Convs[c.ID] = cs
	}
	for _, k := range plan.Members {
		var ms history.MemberState
		err := ex.QueryRowContext(ctx, `SELECT role, joined_seq FROM members WHERE conv = ? AND user_id = ? AND left_seq IS NULL`, k.Conv, k.User).Scan(&ms.Role, &ms.Joined)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return st, err
		}
		st.Members[k] = ms
	}
	for _, k := range plan.CIDs {
		m, err := scanMessage(ex.QueryRowContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND sender = ? AND cid = ?`, k.Conv, k.From, k.CID))
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return st, err
		}
		st.Earlier[k] = m
	}
	return st, readOpState(ctx, ex, plan, &st)
}

// execer is a transaction, or a transaction that reuses prepared statements.
type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// preparedTx runs a transaction's statements prepared: a batch of sends runs
// the same few statements for every message. They are the store's, prepared
// once on the write connection (cache) and bound to the transaction once
// each; one the cache does not have yet is prepared for this transaction.
type preparedTx struct {
	tx    *sql.Tx
	cache *stmts
	stmts map[string]*sql.Stmt
}

func (p *preparedTx) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := p.stmts[q]; ok {
		return st, nil
	}
	var st *sql.Stmt
	if prepared, ok := p.cache.lookup(q); ok {
		st = p.tx.StmtContext(ctx, prepared)
	} else {
		var err error
		if st, err = p.tx.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
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

func (p *preparedTx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedTx) close() {
	for _, st := range p.stmts {
		st.Close()
	}
}

// insertMessage writes nm as message seq of its conversation and its outbox
// row, moves the conversation to it and counts the change.
func insertMessage(ctx context.Context, tx execer, nm history.NewMessage, seq int64) (history.Message, error) {
	m := nm.Stored(seq)
	_, err := tx.ExecContext(ctx, insertSQL, messageArgs(m)...)
	if err != nil {
		return history.Message{}, err
	}
	if err := moveConv(ctx, tx, history.ConvLast{Conv: m.Conv, Seq: m.Seq, TS: m.TS}); err != nil {
		return history.Message{}, err
	}
	if err := writeMessageEvents(ctx, tx, m); err != nil {
		return history.Message{}, err
	}
	return m, countChange(ctx, tx)
}

// moveConv sets the last message of a conversation and marks it changed by
// the transaction's change (see countChange).
func moveConv(ctx context.Context, tx execer, l history.ConvLast) error {
	_, err := tx.ExecContext(ctx, `UPDATE conversations SET last_seq = ?, updated_at = ?, changed_xid = (SELECT n FROM changes) + 1 WHERE id = ?`, l.Seq, l.TS.Format(tsLayout), l.Conv)
	return err
}

// countChange counts a write transaction's change, after the rows it changed
// were marked with the count plus one.
func countChange(ctx context.Context, tx execer) error {
	_, err := tx.ExecContext(ctx, `UPDATE changes SET n = n + 1`)
	return err
}

// Messages implements history.Store.
func (s *Store) Messages(ctx context.Context, conv string, after int64, limit int) ([]history.Message, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = ? AND seq > ? ORDER BY seq LIMIT ?`, conv, after, limit)
	out, err := collect(rows, err, scanMessage)
	return out, translate(err)
}

// CreateGroup implements history.Store.
func (s *Store) CreateGroup(ctx context.Context, g history.Group, members []history.Member, nm history.NewMessage) (history.Message, error) {
	var msg history.Message
	err := s.tx(ctx, func(tx *sql.Tx) error {
		nm.Conv = g.Conv()
		res, err := tx.ExecContext(ctx, `INSERT INTO conversations (id, kind, created_at, updated_at, member_version) VALUES (?, 'group', ?, ?, 1) ON CONFLICT DO NOTHING`, nm.Conv, now(), now())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return history.GroupExists(g.ID)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO groups (id, name, created_by, created_at) VALUES (?, ?, ?, ?)`, g.ID, g.Name, g.CreatedBy, g.CreatedAt.UTC().Format(tsLayout)); err != nil {
			return err
		}
		for _, m := range members {
			if _, err := tx.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?, ?, ?, 1)`, nm.Conv, m.User, m.Role); err != nil {
				return err
			}
		}
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
	g, ms, _, err := loadGroup(ctx, s.read, id)
	return g, ms, translate(err)
}

// loadGroup reads group id, its current members and the last seq of its
// conversation.
func loadGroup(ctx context.Context, q querier, id string) (g history.Group, ms []history.Member, last int64, err error) {
	var ts string
	err = q.QueryRowContext(ctx, `SELECT g.id, g.name, g.created_by, g.created_at, c.member_version, c.last_seq FROM groups g
		JOIN conversations c ON c.id = 'g:' || g.id WHERE g.id = ?`, id).Scan(&g.ID, &g.Name, &g.CreatedBy, &ts, &g.Version, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return g, nil, 0, history.NoSuchGroup(id)
	}
	if err != nil {
		return g, nil, 0, err
	}
	g.CreatedAt, _ = time.Parse(tsLayout, ts)
	rows, err := q.QueryContext(ctx, `SELECT user_id, role FROM members WHERE conv = ? AND left_seq IS NULL ORDER BY user_id`, g.Conv())
	ms, err = collect(rows, err, func(row scanner) (history.Member, error) {
		var m history.Member
		err := row.Scan(&m.User, &m.Role)
		return m, err
	})
	if err != nil {
		return g, nil, 0, err
	}
	return g, ms, last, nil
}

// ChangeMember implements history.Store.
func (s *Store) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	var msg history.Message
	var plan history.MemberPlan
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, ms, last, err := loadGroup(ctx, tx, c.Group)
		if err != nil {
			return err
		}
		if plan, err = history.PlanMemberChange(ms, c, last); err != nil {
			return err
		}
		conv := plan.Message.Conv
		if _, err := tx.ExecContext(ctx, `UPDATE conversations SET member_version = member_version + 1 WHERE id = ?`, conv); err != nil {
			return err
		}
		switch {
		case plan.Joins():
			_, err = tx.ExecContext(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES (?1, ?2, ?3, ?4)
				ON CONFLICT (conv, user_id) DO UPDATE SET role = ?3, joined_seq = ?4, left_seq = NULL`, conv, c.User, c.Role, plan.Seq)
		case plan.Leaves():
			_, err = tx.ExecContext(ctx, `UPDATE members SET left_seq = ? WHERE conv = ? AND user_id = ?`, plan.Seq, conv, c.User)
		default:
			_, err = tx.ExecContext(ctx, `UPDATE members SET role = ? WHERE conv = ? AND user_id = ?`, c.Role, conv, c.User)
		}
		if err != nil {
			return err
		}
		msg, err = insertMessage(ctx, tx, plan.Message, plan.Seq)
		return err
	})
	if err != nil {
		return history.Message{}, nil, err
	}
	return msg, plan.After, nil
}
