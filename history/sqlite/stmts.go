package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmts keeps the statements of the hot paths prepared on one *sql.DB for
// the life of the store: modernc's SQLite parses a statement again at every
// unprepared call, which costs more than running it. A *sql.Stmt re-prepares
// itself on a new connection when the pool replaces one.
//
// The write database has one connection, which a transaction holds: there a
// statement not prepared yet is prepared for the transaction alone and noted
// (lookup), and prepareNoted prepares it for good once the transaction is
// over.
type stmts struct {
	db    *sql.DB
	mu    sync.Mutex
	m     map[string]*sql.Stmt
	noted map[string]bool
}

// lookup returns the statement q when it is prepared, and otherwise notes
// it for prepareNoted.
func (c *stmts) lookup(q string) (*sql.Stmt, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[q]
	if !ok {
		if c.noted == nil {
			c.noted = map[string]bool{}
		}
		c.noted[q] = true
	}
	return st, ok
}

// prepareNoted prepares the statements lookup did not find. It must not run
// inside a transaction of the write database. A statement that fails to
// prepare is left to be prepared per transaction.
func (c *stmts) prepareNoted(ctx context.Context) {
	c.mu.Lock()
	noted := c.noted
	c.noted = nil
	c.mu.Unlock()
	for q := range noted {
		_, _ = c.get(ctx, q)
	}
}

// get returns the statement q prepared on the database. The lock is not
// held while preparing, which waits for a connection.
func (c *stmts) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[q]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if had, ok := c.m[q]; ok {
		st.Close()
		return had, nil
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st, nil
}

// queryRow runs q prepared; a failed prepare is reported by the Row.
func (c *stmts) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := c.get(ctx, q)
	if err != nil {
		return c.db.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

// close closes the statements.
func (c *stmts) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m, c.noted = nil, nil
	return errors.Join(errs...)
}
