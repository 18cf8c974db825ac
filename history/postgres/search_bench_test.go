package postgres_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/parley-im/parley/history"
	"github.com/parley-im/parley/history/postgres"
)

// searchConvs is how many direct conversations fillSearch spreads the
// messages over; alice is in the first aliceConvs of them.
const (
	searchConvs = 100_000
	aliceConvs  = 10
)

// fillSearch writes rows messages over searchConvs conversations with
// generate_series, as sends would store them (the search vector with the
// store's configuration, the indexes), and returns the store. Each
// message's text is one of 20 common words ("lunch" is in 1 of 20
// messages) and four of 5,000 rarer ones. alice is a party of the first
// aliceConvs conversations: rows*aliceConvs/searchConvs messages (1,000 of
// 10 million) are hers to search.
func fillSearch(b *testing.B, rows int) *postgres.Store {
	b.Helper()
	ctx := context.Background()
	s := open(b)
	n := strconv.Itoa(rows)
	conv := `CASE WHEN c < 10 THEN 'dm:alice:b' || c ELSE 'dm:a' || c || ':b' || c END`
	sqls := []string{
		`INSERT INTO conversations (id, kind, last_seq) SELECT ` + conv + `, 'direct', ` + n + ` / 100000 FROM generate_series(0, 99999) c`,
		`INSERT INTO members (conv, user_id, role, joined_seq) SELECT ` + conv + `, u, 'member', 0
			FROM generate_series(0, 99999) c, LATERAL (VALUES (CASE WHEN c < 10 THEN 'alice' ELSE 'a' || c END), ('b' || c)) v(u)`,
		// Bulk load: indexes built once afterwards, the vector computed in
		// the INSERT rather than by the trigger row by row.
		`DROP INDEX messages_search`, `DROP INDEX messages_id`, `DROP INDEX messages_sender`,
		`ALTER TABLE messages DISABLE TRIGGER messages_search`,
		`INSERT INTO messages (conv, seq, id, sender, type, body, created_at, search)
			SELECT conv, seq, 'id' || i, sender, 'text', json_build_object('text', txt), ts, to_tsvector('simple', txt)
			FROM (SELECT i, ` + conv + ` AS conv, i / 100000 + 1 AS seq,
				CASE WHEN c < 10 THEN 'alice' ELSE 'a' || c END AS sender,
				timestamptz '2026-01-01' + i * interval '1 millisecond' AS ts,
				(ARRAY['lunch','meeting','tomorrow','project','hello','thanks','call','later','photo','weekend',
					'dinner','office','coffee','train','report','budget','design','review','party','music'])[i % 20 + 1]
				|| ' ' || 'w' || (i * 7919 % 5000) || 'x ' || 'w' || (i * 104729 % 5000) || 'x '
				|| 'w' || (i * 15485863 % 5000) || 'x ' || 'w' || (i * 32452843 % 5000) || 'x' AS txt
				FROM (SELECT i, (i % 100000)::int AS c FROM generate_series(0::bigint, ` + n + ` - 1) i) g) x`,
		`ALTER TABLE messages ENABLE TRIGGER messages_search`,
		`SET maintenance_work_mem = '1GB'`,
		`CREATE INDEX messages_search ON messages USING gin (search)`,
		`CREATE UNIQUE INDEX messages_id ON messages (id)`,
		`CREATE INDEX messages_sender ON messages (sender)`,
		`VACUUM ANALYZE messages`,
		`ANALYZE members`, `ANALYZE conversations`,
	}
	pool := s.Pool()
	conn, err := pool.Acquire(ctx) // one session: SET applies to the index builds
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	for _, q := range sqls {
		start := time.Now()
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
		if d := time.Since(start); d > time.Second {
			b.Logf("%6.1fs  %.60s", d.Seconds(), q)
		}
	}
	return s
}

// BenchmarkSearch times alice's first page of search results (20) over a
// table of PARLEY_SEARCH_ROWS messages (default 10 million), of which
// 1/10,000 are alice's: a common word, a rare one, a prefix, two words.
// Loading 10 million rows takes several minutes. Run with:
//
//	PARLEY_SEARCH_ROWS=10000000 go test -run '^$' -bench Search -benchtime 50x -timeout 60m ./history/postgres/
func BenchmarkSearch(b *testing.B) {
	rows := 10_000_000
	if v := os.Getenv("PARLEY_SEARCH_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	s := fillSearch(b, rows)
	ctx := context.Background()
	for _, q := range []struct{ name, query string }{
		{"common", "lunch"},        // 1 message in 20: 100 of alice's 1,000
		{"rare", "w4999x"},         // about 8 per 10,000 messages
		{"prefix", "w12"},          // w12x, w120x..w129x, w1200x..: about 2% of messages
		{"two", "lunch w1x"},       // both words
		{"nothing", "nosuchword"},  // no match anywhere
		{"common_other", "coffee"}, // a common word alice never used: 1 in 20 others'
	} {
		terms, _ := history.SearchTerms(q.query)
		b.Run(fmt.Sprintf("rows=%d/%s", rows, q.name), func(b *testing.B) {
			var hits int
			for i := 0; i < b.N; i++ {
				msgs, _, err := s.Search(ctx, history.SearchQuery{User: "alice", Terms: terms, Limit: 20})
				if err != nil {
					b.Fatal(err)
				}
				hits = len(msgs)
			}
			b.ReportMetric(float64(hits), "results")
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/op")
		})
	}
}
