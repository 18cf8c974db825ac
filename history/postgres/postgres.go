// Package postgres implements history.Store on PostgreSQL with pgx/v5. The
// caller owns the *pgxpool.Pool; Migrate applies the embedded schema
// migrations under an advisory lock so that several nodes may start at once.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/migrations"
)

// Store is a history.Store on a PostgreSQL pool.
type Store struct {
	pool          *pgxpool.Pool
	ownPool       bool
	schemaVersion int64
}

var _ history.Store = (*Store)(nil)

// New returns a Store on pool, which the caller owns and closes. It does not
// migrate: call Migrate first (Open does both).
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, schemaVersion: migrations.Latest(migrations.Postgres())}
}

// Open connects to the database at url, applies pending migrations and returns
// a Store that owns its pool (Close closes it).
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	if err := Migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	s := New(pool)
	s.ownPool = true
	return s, nil
}

// Migrate applies every pending migration to the database behind pool, holding
// a PostgreSQL session advisory lock while it does, so that concurrent callers
// apply each migration exactly once. log may be nil.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		return fmt.Errorf("postgres: migration lock: %w", err)
	}
	opts := []goose.ProviderOption{goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true)}
	if log != nil {
		opts = append(opts, goose.WithSlog(log))
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres(), opts...)
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool if Open created it.
func (s *Store) Close() error {
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}

// Ping checks that the database answers and carries the latest migration.
func (s *Store) Ping(ctx context.Context) error {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version WHERE is_applied`).Scan(&v)
	if err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	if v < s.schemaVersion {
		return fmt.Errorf("postgres: schema at version %d, want %d", v, s.schemaVersion)
	}
	return nil
}

// tx runs fn in a transaction and translates driver errors at one boundary.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	return translate(err)
}

func translate(err error) error {
	if err == nil {
		return nil
	}
	var he *history.Error
	if errors.As(err, &he) {
		return he
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return history.Errorf(history.ENOTFOUND, "not found")
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return history.Errorf(history.ECONFLICT, "already exists")
		case strings.HasPrefix(pe.Code, "22"):
			// A data exception (such as 22021, U+0000 in text): a value of
			// the request is at fault, not the database, so send.Committer
			// retries the other messages of a batch without it. Other
			// integrity violations than 23505 point at a bug and stay
			// store failures.
			return history.Errorf(history.EINVALID, "a value was refused by the store (SQLSTATE %s)", pe.Code)
		}
	}
	return fmt.Errorf("postgres: %w", err)
}

const messageColumns = `conv, seq, id, coalesce(cid, ''), sender, type, body::text, created_at`

func scanMessage(row pgx.Row) (history.Message, error) {
	var m history.Message
	var body string
	err := row.Scan(&m.Conv, &m.Seq, &m.ID, &m.CID, &m.From, &m.Type, &body, &m.TS)
	m.Body = []byte(body)
	m.TS = m.TS.UTC()
	return m, err
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func insertMessage(ctx context.Context, tx pgx.Tx, nm history.NewMessage, seq int64) (history.Message, error) {
	ts := nm.TS.UTC().Truncate(time.Microsecond)
	_, err := tx.Exec(ctx, `INSERT INTO messages (conv, seq, id, cid, sender, type, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		nm.Conv, seq, nm.ID, nullable(nm.CID), nm.From, nm.Type, string(nm.Body), ts)
	if err != nil {
		return history.Message{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE conversations SET last_seq = $2, updated_at = $3, changed_xid = pg_current_xact_id()::text::bigint WHERE id = $1`, nm.Conv, seq, ts); err != nil {
		return history.Message{}, err
	}
	return history.Message{Conv: nm.Conv, Seq: seq, ID: nm.ID, CID: nm.CID, From: nm.From, TS: ts, Type: nm.Type, Body: nm.Body}, nil
}

// Messages implements history.Store.
func (s *Store) Messages(ctx context.Context, conv string, after int64, limit int) ([]history.Message, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = $1 AND seq > $2 ORDER BY seq LIMIT $3`, conv, after, limit)
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
	err := s.tx(ctx, func(tx pgx.Tx) error {
		conv := history.GroupConvID(g.ID)
		tag, err := tx.Exec(ctx, `INSERT INTO conversations (id, kind) VALUES ($1, 'group') ON CONFLICT DO NOTHING`, conv)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return history.Errorf(history.ECONFLICT, "group %q already exists", g.ID)
		}
		if _, err := tx.Exec(ctx, `UPDATE conversations SET member_version = 1 WHERE id = $1`, conv); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO groups (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)`, g.ID, g.Name, g.CreatedBy, g.CreatedAt.UTC()); err != nil {
			return err
		}
		for _, m := range members {
			if _, err := tx.Exec(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES ($1, $2, $3, 1)`, conv, m.User, m.Role); err != nil {
				return err
			}
		}
		nm.Conv = conv
		msg, err = insertMessage(ctx, tx, nm, 1)
		return err
	})
	return msg, err
}

// Group implements history.Store.
func (s *Store) Group(ctx context.Context, id string) (history.Group, []history.Member, error) {
	var g history.Group
	var ms []history.Member
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		g, ms, err = loadGroup(ctx, tx, id, false)
		return err
	})
	return g, ms, err
}

func loadGroup(ctx context.Context, tx pgx.Tx, id string, forUpdate bool) (history.Group, []history.Member, error) {
	var g history.Group
	q := `SELECT g.id, g.name, g.created_by, g.created_at, c.member_version FROM groups g JOIN conversations c ON c.id = 'g:' || g.id WHERE g.id = $1`
	if forUpdate {
		// Lock the conversation row: membership changes and sends of one group
		// are serialized, so a removed member cannot slip a message in.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, history.GroupConvID(id)); err != nil {
			return g, nil, err
		}
	}
	err := tx.QueryRow(ctx, q, id).Scan(&g.ID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, nil, history.Errorf(history.ENOTFOUND, "no such group %q", id)
	}
	if err != nil {
		return g, nil, err
	}
	g.CreatedAt = g.CreatedAt.UTC()
	rows, err := tx.Query(ctx, `SELECT user_id, role FROM members WHERE conv = $1 AND left_seq IS NULL ORDER BY user_id`, history.GroupConvID(id))
	if err != nil {
		return g, nil, err
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (history.Member, error) {
		var m history.Member
		err := r.Scan(&m.User, &m.Role)
		return m, err
	})
	return g, ms, err
}

// ChangeMember implements history.Store.
func (s *Store) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	var msg history.Message
	var after []history.Member
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, ms, err := loadGroup(ctx, tx, c.Group, true)
		if err != nil {
			return err
		}
		typ, err := history.CheckMemberChange(ms, c)
		if err != nil {
			return err
		}
		conv := history.GroupConvID(c.Group)
		var last int64
		if err := tx.QueryRow(ctx, `UPDATE conversations SET member_version = member_version + 1 WHERE id = $1 RETURNING last_seq`, conv).Scan(&last); err != nil {
			return err
		}
		seq := last + 1
		switch typ {
		case history.TypeMemberAdded:
			_, err = tx.Exec(ctx, `INSERT INTO members (conv, user_id, role, joined_seq) VALUES ($1, $2, $3, $4)
				ON CONFLICT (conv, user_id) DO UPDATE SET role = $3, joined_seq = $4, left_seq = NULL`, conv, c.User, c.Role, seq)
		case history.TypeMemberRole:
			_, err = tx.Exec(ctx, `UPDATE members SET role = $3 WHERE conv = $1 AND user_id = $2`, conv, c.User, c.Role)
		default:
			_, err = tx.Exec(ctx, `UPDATE members SET left_seq = $3 WHERE conv = $1 AND user_id = $2`, conv, c.User, seq)
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
