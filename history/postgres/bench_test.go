package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/historytest"
	"github.com/parley-im/parley/history/postgres"
)

// fill writes rows messages spread over 1,000 conversations (dm:a:uNNN),
// with generate_series, and returns the store.
func fill(b *testing.B, rows int) *postgres.Store {
	b.Helper()
	ctx := context.Background()
	s := open(b)
	const convs = 1000
	per := rows / convs
	sqls := []string{
		`INSERT INTO conversations (id, kind, last_seq) SELECT 'dm:a:u' || lpad(i::text, 4, '0'), 'direct', ` + strconv.Itoa(per) + ` FROM generate_series(1, 1000) i`,
		`INSERT INTO members (conv, user_id, role, joined_seq) SELECT 'dm:a:u' || lpad(i::text, 4, '0'), u, 'member', 0
			FROM generate_series(1, 1000) i, (VALUES ('a'), ('b')) v(u)`,
		`ALTER TABLE messages SET UNLOGGED`,
		`INSERT INTO messages (conv, seq, id, sender, type, body, created_at)
			SELECT 'dm:a:u' || lpad((n % 1000 + 1)::text, 4, '0'), n / 1000 + 1, 'id' || n, 'a', 'text', '"hello"', now()
			FROM generate_series(0, ` + strconv.Itoa(per*convs-1) + `) n`,
		`ALTER TABLE messages SET LOGGED`,
		`ANALYZE messages`,
	}
	pool := s.Pool()
	for _, q := range sqls {
		if _, err := pool.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	return s
}

// BenchmarkHistory pages forward through one conversation, 50 messages a
// page, in a table of 10 thousand and of 10 million messages. The ratio of
// the two ns/op is the cost of size; with the (conv, seq) primary key it
// stays near 1. Run with:
//
//	PARLEY_BENCH_ROWS=10000000 go test -run '^$' -bench History -benchtime 2000x ./history/postgres/
func BenchmarkHistory(b *testing.B) {
	big := 10_000_000
	if v := os.Getenv("PARLEY_BENCH_ROWS"); v != "" {
		big, _ = strconv.Atoi(v)
	}
	for _, rows := range []int{10_000, big} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			s := fill(b, rows)
			ctx := context.Background()
			per := int64(rows / 1000)
			q := history.HistoryQuery{User: "b", Conv: "dm:a:u0500", Limit: 50}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				q.After = int64(i*50) % max(per-50, 1)
				msgs, _, err := s.History(ctx, q)
				if err != nil || len(msgs) == 0 {
					b.Fatalf("page after %d: %d messages, %v", q.After, len(msgs), err)
				}
			}
		})
	}
}

// BenchmarkAppend stores one message per transaction, and 64 per
// transaction (group commit); compare the per-message figures.
func BenchmarkAppend(b *testing.B) {
	historytest.BenchAppend(b, func(tb testing.TB) history.Store { return open(tb) })
}
