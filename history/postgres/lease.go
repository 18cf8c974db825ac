package postgres

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// leasePing is how often a leader checks the connection that holds its
// lock; leaseTimeout bounds one check.
const (
	leasePing    = time.Second
	leaseTimeout = 5 * time.Second
)

// leaseKey returns the two int4 keys of name's advisory lock: its 64-bit
// FNV-1a hash, split. The two-key form is a key space of its own, apart
// from the one-bigint keys (the outbox lock, the migration lock).
func leaseKey(name string) (int32, int32) {
	h := fnv.New64a()
	h.Write([]byte(name))
	v := h.Sum64()
	return int32(v >> 32), int32(v)
}

// TryLead implements history.Leaser with a session advisory lock held on a
// connection taken out of the pool for as long as the leadership lasts. A
// goroutine pings that connection every second; when a ping fails (the
// connection broke, or the server ended the session) it closes the
// connection, so that the server frees the lock if it still held it, and
// closes lost. release stops the pings, unlocks and returns the connection
// to the pool; it may be called more than once, and does not close lost.
func (s *Store) TryLead(ctx context.Context, name string) (bool, <-chan struct{}, func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, nil, nil, translate(err)
	}
	k1, k2 := leaseKey(name)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, k1, k2).Scan(&ok); err != nil {
		conn.Release()
		return false, nil, nil, translate(err)
	}
	if !ok {
		conn.Release()
		return false, nil, nil, nil
	}
	l := &lease{conn: conn, k1: k1, k2: k2, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return true, l.lost, l.release, nil
}

// lease is a held leadership: its connection and the goroutine that
// watches it.
type lease struct {
	conn   *pgxpool.Conn
	k1, k2 int32
	lost   chan struct{}
	stop   chan struct{} // closed by release
	done   chan struct{} // closed when watch returns
	once   sync.Once
}

// watch pings the connection until release or a failure. On a failure it
// closes the connection and lost, and gives the connection back to the
// pool, which discards it.
func (l *lease) watch() {
	defer close(l.done)
	t := time.NewTicker(leasePing)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
			l.conn.Conn().Close(ctx)
			cancel()
			l.conn.Release()
			l.conn = nil
			close(l.lost)
			return
		}
	}
}

// release gives up the leadership once: it stops the watch and, unless the
// connection was lost, unlocks and returns it to the pool. A connection
// that cannot unlock is closed, which unlocks too.
func (l *lease) release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		if l.conn == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
		defer cancel()
		var ok bool
		if err := l.conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, l.k1, l.k2).Scan(&ok); err != nil || !ok {
			l.conn.Conn().Close(ctx)
		}
		l.conn.Release()
		l.conn = nil
	})
}
