package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/parley-im/parley/history"
)

// collect returns the rows of a query, each read by scan, and closes them;
// err is the query's own error, returned as it is.
func collect[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanString reads a row of one text column.
func scanString(row scanner) (string, error) {
	var s string
	err := row.Scan(&s)
	return s, err
}

// maxChunk is the most rows one multi-row INSERT carries: 128 messages of
// insertSQL's 14 columns are 1792 parameters, far below SQLite's limit.
const maxChunk = 128

// insertRows inserts n rows with one multi-row INSERT per chunk (the query
// head, "INSERT INTO t (cols) VALUES", then row, "(?, ...)", once per row),
// in order; args appends the arguments of row i. Chunks are powers of two
// (a batch of 13 is 8, 4 and 1 rows), so that only a few statement texts
// exist for the write connection to keep prepared. One statement for many
// rows also means one statement journal and, for messages, one flush of the
// FTS5 index's pending terms (a statement savepoint) per chunk rather than
// per message: that flush was a third of an insert's cost.
func insertRows(ctx context.Context, ex execer, head, row string, n int, args func(i int, into []any) []any) error {
	var b strings.Builder
	var vals []any
	for i := 0; i < n; {
		k := maxChunk
		for k > n-i {
			k /= 2
		}
		b.Reset()
		b.Grow(len(head) + k*(len(row)+2))
		b.WriteString(head)
		for j := 0; j < k; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(row)
		}
		vals = vals[:0]
		for j := i; j < i+k; j++ {
			vals = args(j, vals)
		}
		if _, err := ex.ExecContext(ctx, b.String(), vals...); err != nil {
			return err
		}
		i += k
	}
	return nil
}

// insertMessages inserts ms (insertSQL's columns) in order.
func insertMessages(ctx context.Context, ex execer, ms []history.Message) error {
	return insertRows(ctx, ex, insertMessagesHead, insertMessagesRow, len(ms), func(i int, into []any) []any {
		return append(into, messageArgs(ms[i])...)
	})
}
