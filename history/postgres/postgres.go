// Package postgres implements history.Store on PostgreSQL with pgx/v5. The
// caller owns the *pgxpool.Pool; Migrate applies the embedded schema
// migrations under an advisory lock so that several nodes may start at once.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/internal/migrate"
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

// Open connects to the database at url (see Connect), applies pending
// migrations and returns a Store that owns its pool (Close closes it).
func Open(ctx context.Context, url string, log *slog.Logger) (*Store, error) {
	pool, err := Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := MigrateReport(ctx, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	s := New(pool)
	s.ownPool = true
	return s, nil
}

// Connect returns a pool on the database at url once one connection to it
// works. A URL that does not parse, a server that does not answer within
// ConnectTimeout and a refused login (wrong password, missing database) are
// errors that say so in one line and name the database
// (user@host:port/database, see Describe) but never the password.
func Connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse database url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
	err = pool.Ping(pctx)
	cancel()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %s", Describe(cfg.ConnConfig), connectReason(err))
	}
	return pool, nil
}

// ConnectTimeout bounds Open's first connection to the database.
const ConnectTimeout = 15 * time.Second

// Describe names the database of cfg as user@host:port/database, without
// the password: for logs and error messages.
func Describe(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") {
		host = "[" + host + "]" // a Unix socket directory
	}
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, host, cfg.Port, cfg.Database)
}

// connectReason says in a few words why a first connection failed: the
// server's refusal (wrong password, no such database) or the network's.
// pgx's own text repeats itself for every address and TLS mode it tried.
func connectReason(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01":
			return "wrong password or user name (" + pgErr.Message + ")"
		case "3D000":
			return pgErr.Message + " (create it, or fix the database name)"
		}
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", ConnectTimeout)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) {
		return sysErr.Err.Error() + " (is PostgreSQL running there?)"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// Migrate applies every pending migration to the database behind pool, holding
// a PostgreSQL session advisory lock while it does, so that concurrent callers
// apply each migration exactly once. log may be nil.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	_, err := MigrateReport(ctx, pool, log)
	return err
}

// MigrateReport is Migrate that also says what it did: the migrations it
// applied and the schema version after them.
func MigrateReport(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (migrations.Report, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 600))
	if err != nil {
		return migrations.Report{}, fmt.Errorf("postgres: migration lock: %w", err)
	}
	return migrate.Up(ctx, "postgres", goose.DialectPostgres, db, migrations.Postgres(), log, goose.WithSessionLocker(locker))
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
	return migrations.Ping(ctx, "postgres", s.schemaVersion, func(ctx context.Context, q string, v *int64) error {
		return s.pool.QueryRow(ctx, q).Scan(v)
	})
}

// tx runs fn in a transaction and translates driver errors at one boundary.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, s.pool, fn)
	return translate(err)
}

// snapshot runs fn in a read-only transaction whose statements all see one
// snapshot (repeatable read): a read of several statements never sees a
// commit between two of them, such as retention deleting the first kept
// message after expired_before was read.
func (s *Store) snapshot(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func translate(err error) error {
	if out, ok := history.Translate(err, pgx.ErrNoRows); ok {
		return out
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "23505":
			return history.Errorf(history.ECONFLICT, "already exists")
		case pe.Code == "23503" && pe.TableName == "message_files":
			// An attachment whose upload was collected meanwhile: this
			// message alone fails (see send.Committer).
			return history.Errorf(history.EINVALID, "an attached file is gone")
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

const messageColumns = `conv, seq, id, coalesce(cid, ''), sender, type, body::text, created_at,
	coalesce(reply_to, 0), mentions, coalesce(target, 0), coalesce(emoji, ''), edited_at, deleted, attachments::text`

// memberRows selects history.MemberRows, in the order of the struct's
// fields; the caller appends the condition.
const memberRows = `SELECT m.conv, c.kind, m.joined_seq, coalesce(m.left_seq, 0), c.last_seq, c.expired_before
	FROM members m JOIN conversations c ON c.id = m.conv WHERE `

func scanMessage(row pgx.Row) (history.Message, error) {
	var m history.Message
	var body string
	var edited *time.Time
	var attachments *string
	err := row.Scan(&m.Conv, &m.Seq, &m.ID, &m.CID, &m.From, &m.Type, &body, &m.TS,
		&m.ReplyTo, &m.Mentions, &m.Target, &m.Emoji, &edited, &m.Deleted, &attachments)
	if err == nil && attachments != nil {
		err = json.Unmarshal([]byte(*attachments), &m.Attachments)
	}
	m.Body = []byte(body)
	m.TS = m.TS.UTC()
	if edited != nil {
		m.EditedAt = edited.UTC()
	}
	return m, err
}

// queueMessage queues on batch the writes that store nm as message seq of
// its conversation and move the conversation to it, and returns the message.
func queueMessage(batch *pgx.Batch, nm history.NewMessage, seq int64) history.Message {
	m := nm.Stored(seq)
	queueInsert(batch, []history.Message{m})
	batch.Queue(`UPDATE conversations SET last_seq = $2, updated_at = $3, changed_xid = pg_current_xact_id()::text::bigint WHERE id = $1`, m.Conv, m.Seq, m.TS)
	return m
}

// Messages implements history.Store.
func (s *Store) Messages(ctx context.Context, conv string, after int64, limit int) ([]history.Message, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+messageColumns+` FROM messages WHERE conv = $1 AND seq > $2 ORDER BY seq LIMIT $3`, conv, after, limit)
	if err != nil {
		return nil, translate(err)
	}
	out, err := pgx.CollectRows(rows, collectMessage)
	return out, translate(err)
}

func collectMessage(r pgx.CollectableRow) (history.Message, error) { return scanMessage(r) }

// CreateGroup implements history.Store.
func (s *Store) CreateGroup(ctx context.Context, g history.Group, members []history.Member, nm history.NewMessage) (history.Message, error) {
	var msg history.Message
	users, roles := make([]string, len(members)), make([]string, len(members))
	for i, m := range members {
		users[i], roles[i] = m.User, m.Role
	}
	// One round trip claims the id, one writes the group, its members and
	// the group.created message.
	err := s.tx(ctx, func(tx pgx.Tx) error {
		nm.Conv = g.Conv()
		tag, err := tx.Exec(ctx, `INSERT INTO conversations (id, kind, member_version) VALUES ($1, 'group', 1) ON CONFLICT DO NOTHING`, nm.Conv)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return history.GroupExists(g.ID)
		}
		batch := &pgx.Batch{}
		batch.Queue(`INSERT INTO groups (id, name, created_by, created_at) VALUES ($1, $2, $3, $4)`, g.ID, g.Name, g.CreatedBy, g.CreatedAt.UTC())
		batch.Queue(`INSERT INTO members (conv, user_id, role, joined_seq) SELECT $1, u, r, 1 FROM unnest($2::text[], $3::text[]) AS x(u, r)`, nm.Conv, users, roles)
		msg = queueMessage(batch, nm, 1)
		queueOutbox(batch, messageRows(msg)) // last: see queueOutbox
		return tx.SendBatch(ctx, batch).Close()
	})
	return msg, err
}

// Group implements history.Store.
func (s *Store) Group(ctx context.Context, id string) (history.Group, []history.Member, error) {
	var g history.Group
	var ms []history.Member
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		g, ms, _, err = loadGroup(ctx, tx, id, false)
		return err
	})
	return g, ms, err
}

// loadGroup reads group id, its current members and the last seq of its
// conversation, first locking the conversation when forUpdate is set.
func loadGroup(ctx context.Context, tx pgx.Tx, id string, forUpdate bool) (g history.Group, ms []history.Member, last int64, err error) {
	if forUpdate {
		// Lock the conversation row: membership changes and sends of one group
		// are serialized, so a removed member cannot slip a message in.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, history.GroupConvID(id)); err != nil {
			return g, nil, 0, err
		}
	}
	err = tx.QueryRow(ctx, `SELECT g.id, g.name, g.created_by, g.created_at, c.member_version, c.last_seq FROM groups g
		JOIN conversations c ON c.id = 'g:' || g.id WHERE g.id = $1`, id).Scan(&g.ID, &g.Name, &g.CreatedBy, &g.CreatedAt, &g.Version, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return g, nil, 0, history.NoSuchGroup(id)
	}
	if err != nil {
		return g, nil, 0, err
	}
	g.CreatedAt = g.CreatedAt.UTC()
	rows, err := tx.Query(ctx, `SELECT user_id, role FROM members WHERE conv = $1 AND left_seq IS NULL ORDER BY user_id`, g.Conv())
	if err != nil {
		return g, nil, 0, err
	}
	ms, err = pgx.CollectRows(rows, pgx.RowToStructByPos[history.Member])
	return g, ms, last, err
}

// ChangeMember implements history.Store: it locks the conversation and reads
// the group, then writes the member's row, the membership version and the
// membership message in one pipelined round trip.
func (s *Store) ChangeMember(ctx context.Context, c history.MemberChange) (history.Message, []history.Member, error) {
	var msg history.Message
	var plan history.MemberPlan
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, ms, last, err := loadGroup(ctx, tx, c.Group, true)
		if err != nil {
			return err
		}
		if plan, err = history.PlanMemberChange(ms, c, last); err != nil {
			return err
		}
		conv := plan.Message.Conv
		batch := &pgx.Batch{}
		batch.Queue(`UPDATE conversations SET member_version = member_version + 1 WHERE id = $1`, conv)
		if plan.Joins() {
			batch.Queue(`INSERT INTO members (conv, user_id, role, joined_seq) VALUES ($1, $2, $3, $4)
				ON CONFLICT (conv, user_id) DO UPDATE SET role = $3, joined_seq = $4, left_seq = NULL`, conv, c.User, c.Role, plan.Seq)
		} else if plan.Leaves() {
			batch.Queue(`UPDATE members SET left_seq = $3 WHERE conv = $1 AND user_id = $2`, conv, c.User, plan.Seq)
		} else {
			batch.Queue(`UPDATE members SET role = $3 WHERE conv = $1 AND user_id = $2`, conv, c.User, c.Role)
		}
		msg = queueMessage(batch, plan.Message, plan.Seq)
		queueOutbox(batch, messageRows(msg)) // last: see queueOutbox
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return history.Message{}, nil, err
	}
	return msg, plan.After, nil
}
